"""``headwater dags ...``: list, show, test, trigger, backfill, pause, unpause."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import click

from headwater.cli.env import Env
from headwater.cli.output import Col, console, say, state, table, task_table, when
from headwater.errors import UserError

if TYPE_CHECKING:
    from rich.table import Table
    from rich.tree import Tree

    from headwater.orchestration.spec import DagSpec
    from headwater.store.base import TaskInstanceRecord

pass_env = click.make_pass_decorator(Env)
_TABLE_LIMIT = 30  # rows of task instances printed before summarising


@click.group()
def dags() -> None:
    """Work with DAGs."""


def schedule_text(schedule: str | None) -> str:
    """The web's rule (one for the CLI and the web), imported on use: ``--help`` stays light."""
    from headwater.web.services.dags import schedule_text as text

    return text(schedule)


@dags.command("list")
@click.option("--reparse", is_flag=True, help="Parse every file again, changed or not.")
@pass_env
def list_dags(env: Env, reparse: bool) -> None:
    """List DAGs in the DAG folder, and the files that failed to load."""
    from rich.markup import escape

    env.refresh_dags(force=reparse)
    store = env.store
    say(f"DAGs in {escape(str(env.settings.dags_folder))} (times in UTC)")
    out = table("dag_id", "schedule", Col("tasks", right=True), "paused", "last run", Col("file", wrap=True))
    for rec in sorted(store.list_dags(), key=lambda r: r.dag_id):
        last = store.list_runs(rec.dag_id, limit=1)
        last_txt = f"{when(last[0].logical_date)} {state(last[0].state.value)}" if last else "-"
        out.add_row(escape(rec.dag_id), escape(schedule_text(rec.spec.schedule)), str(len(rec.spec.tasks)),
                    "yes" if rec.is_paused else "no", last_txt, escape(_short(rec.fileloc, env)))
    console().print(out)
    errors = store.list_import_errors()
    if errors:
        say(f"\n[bold red]{len(errors)} DAG file(s) failed to load:[/]")
        for e in errors:
            where = _short(e.path, env) + (f":{e.lineno}" if e.lineno else "")
            say(f"  [red]{escape(where)}[/] [dim]{e.kind}:[/] {escape(' '.join(e.message.split()))}")


def _short(path: str, env: Env) -> str:
    folder = str(env.settings.dags_folder) + "/"
    return path[len(folder):] if path.startswith(folder) else path


@dags.command("show")
@click.argument("dag_id")
@click.option("--tree/--no-tree", default=None,
              help="Draw the dependency tree (default: for DAGs of up to 40 tasks).")
@pass_env
def show(env: Env, dag_id: str, tree: bool | None) -> None:
    """Show a DAG: its settings, its tasks as a tree, and a layered graph."""
    from rich.markup import escape

    from headwater.cli.graph import TREE_LIMIT, render_graph, render_tree

    rec = env.dag(dag_id)
    spec = rec.spec
    out = console()
    say(f"[bold]{escape(spec.dag_id)}[/]  schedule={escape(schedule_text(spec.schedule))}  "
        f"start={when(spec.start_date)} UTC  catchup={spec.catchup}  paused={rec.is_paused}")
    say(f"owner: {escape(spec.owner)}" + (f"  tags: {escape(', '.join(spec.tags))}" if spec.tags else ""))
    say(f"file: {escape(spec.fileloc)}")
    if spec.description:
        say(escape(spec.description))
    if spec.params:
        out.print(_params_table(spec))
    if spec.task_groups:
        out.print(_groups_tree(spec))
    if tree or (tree is None and len(spec.tasks) <= TREE_LIMIT):
        out.print(render_tree(spec))
    elif tree is None:
        say(f"[dim](tree left out for {len(spec.tasks)} tasks; --tree draws it)[/]")
    for line in render_graph(spec, width=out.width):
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _params_table(spec: DagSpec) -> Table:
    """The DAG's params: default (secrets as ***), the rules a run's conf must meet, description."""
    from rich.markup import escape

    from headwater.orchestration.params import MASK

    out = table("param", "default", Col("rules", wrap=True), Col("description", wrap=True))
    for name, default in spec.params.items():
        entry = spec.params_schema.get(name, {})
        rules = ", ".join(f"{k}={json.dumps(v)}" for k, v in (entry.get("schema") or {}).items())
        shown = "(required)" if entry.get("required") else json.dumps(default)
        if entry.get("secret"):
            shown, rules = MASK, ("secret, " + rules).rstrip(", ")
        out.add_row(escape(name), escape(shown), escape(rules), escape(entry.get("description") or ""))
    return out


def _groups_tree(spec: DagSpec) -> Tree:
    """Task groups with their tasks, nested as defined."""
    from rich.markup import escape
    from rich.tree import Tree

    children: dict[str | None, list[str]] = {}
    for gid, info in spec.task_groups.items():
        children.setdefault(info.get("parent"), []).append(gid)
    members: dict[str, list[str]] = {}
    for tid, task in spec.tasks.items():
        if task.groups:
            members.setdefault(task.groups[-1], []).append(tid)

    def add(node: Tree, gid: str) -> None:
        tip = spec.task_groups[gid].get("tooltip")
        branch = node.add(f"[cyan]{escape(gid)}[/]" + (f" [dim]{escape(tip)}[/]" if tip else ""))
        for child in children.get(gid, []):
            add(branch, child)
        for tid in members.get(gid, []):
            branch.add(escape(tid))

    root = Tree("[bold]task groups[/]")
    for gid in children.get(None, []):
        add(root, gid)
    return root


def _checked_conf(spec: DagSpec, text: str | None) -> dict[str, object]:
    """``--conf`` parsed and checked against the DAG's params before any run is created.

    What is stored is the conf as given (the run's params are merged over the defaults
    when a task runs), so task-level params still apply to names the conf leaves out.
    """
    from headwater.orchestration.params import validate_conf

    conf = _conf(text)
    checked = validate_conf(spec, conf)
    return {k: v for k, v in conf.items() if k in checked}


def _conf(text: str | None) -> dict[str, object]:
    if not text:
        return {}
    hint = 'write a JSON object, e.g. --conf \'{"x": 1}\''
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--conf is not valid JSON: {exc}", hint=hint) from exc
    if not isinstance(value, dict):
        raise UserError(f"--conf must be a JSON object, not {type(value).__name__}", hint=hint)
    return value


def end_of(text: str) -> dt.datetime:
    """An inclusive end date: a day alone (``2021-01-03``) means the whole day."""
    from headwater.orchestration.runs import parse_date

    end = parse_date(text)
    if len(text.strip()) <= 10:
        end += dt.timedelta(days=1, microseconds=-1)
    return end


def report_problems(tis: list[TaskInstanceRecord]) -> None:
    """One greppable line per failed task, with its reason."""
    from rich.markup import escape

    for ti in tis:
        if ti.state.value == "failed":
            say(f"  {state('failed')}: {escape(ti.task_id)}: {escape(' '.join(ti.reason.split()))}")


@dags.command("test")
@click.argument("dag_id")
@click.argument("logical_date", required=False)
@click.option("--conf", default=None, help="JSON object passed to the run as dag_run.conf.")
@click.option("--force", is_flag=True, help="Run tasks even when their outputs already exist.")
@click.option("--all", "show_all", is_flag=True, help=f"List every task, even past {30} of them.")
@pass_env
def test(env: Env, dag_id: str, logical_date: str | None, conf: str | None, force: bool, show_all: bool) -> None:
    """Run one DAG run in this process, without a scheduler (exit 1 if it fails).

    The run is recorded (type "test"); testing the same date again reruns it.
    """
    from rich.markup import escape

    from headwater.clock import utcnow
    from headwater.executor.inline import InlineExecutor
    from headwater.orchestration.runs import clear_task_instances, parse_date, trigger
    from headwater.orchestration.scheduler import Scheduler, SchedulerOptions
    from headwater.orchestration.schedules import timetable_for
    from headwater.orchestration.states import RunState, RunType

    rec = env.dag(dag_id)
    params = _checked_conf(rec.spec, conf)
    now = utcnow()
    when_ = parse_date(logical_date) if logical_date else now
    store = env.store
    interval = timetable_for(rec.spec.schedule, rec.spec.start_date).interval_for(when_)
    existing = store.find_run(dag_id, interval.start)
    if existing is not None:
        clear_task_instances(store, rec.spec, [existing], now=now)
        run = existing
    else:
        run = trigger(store, rec, now, logical_date=when_, conf=params, run_type=RunType.TEST)
    options = SchedulerOptions(only_runs={(dag_id, run.run_id)}, take_lease=False, force=force)
    report = Scheduler(store, InlineExecutor(), env.settings, options).run()
    final = report.finished.get((dag_id, run.run_id))
    tis = store.list_task_instances(dag_id, run.run_id)
    say(f"{escape(dag_id)} at {when(run.logical_date)} UTC, run {escape(run.run_id)}")
    shown = tis
    if len(tis) > _TABLE_LIMIT and not show_all:
        # A thousand rows of "success" hide what matters (and cost ~0.7 s to render).
        counts: dict[str, int] = {}
        for ti in tis:
            counts[ti.state.value] = counts.get(ti.state.value, 0) + 1
        say(", ".join(f"{n} {state(k)}" for k, n in sorted(counts.items())) + f" of {len(tis)} tasks")
        shown = [ti for ti in tis if ti.state.value != "success"][:_TABLE_LIMIT]
        if shown:
            say(f"not successful ({len(shown)} shown; --all lists every task):")
    if shown:
        console().print(task_table(shown, rec.spec.topological_order()))
    report_problems(tis)
    say(f"run {state(final.value if final else 'unfinished')}")
    if final is not RunState.SUCCESS:
        raise SystemExit(1)


@dags.command("trigger")
@click.argument("dag_id")
@click.option("--conf", default=None, help="JSON object for dag_run.conf.")
@click.option("--date", "logical_date", default=None, help="Logical date (default: now).")
@click.option("--run-id", default=None, help="Run id (default: manual__<logical date>).")
@pass_env
def trigger_cmd(env: Env, dag_id: str, conf: str | None, logical_date: str | None, run_id: str | None) -> None:
    """Queue a manual run; a scheduler runs it."""
    from headwater.orchestration.runs import parse_date
    from headwater.web.services import WebContext
    from headwater.web.services.dags import trigger

    rec = env.dag(dag_id)
    params = _checked_conf(rec.spec, conf)
    when_ = parse_date(logical_date) if logical_date else None
    # The web's trigger: conf checked against the DAG's params, taken dates and run ids refused.
    run = trigger(WebContext.around(env.settings, env.store), dag_id, conf=params, logical_date=when_, run_id=run_id)
    say(f"queued run [bold]{run.run_id}[/] of {dag_id}")
    if rec.is_paused:
        say(f"[yellow]note:[/] {dag_id} is paused; its queued runs still run when a scheduler is on")
    say("[dim]a scheduler runs it: `headwater scheduler` (or `--until-idle` to stop when done)[/]")


@dags.command("backfill")
@click.argument("dag_id")
@click.option("--start", "-s", required=True, help="First logical date (YYYY-MM-DD[THH:MM]).")
@click.option("--end", "-e", required=True, help="Last logical date, inclusive; a day alone includes all of it.")
@click.option("--rerun-failed", is_flag=True, help="Clear and rerun the failed tasks of failed runs.")
@click.option("--conf", default=None, help="JSON object for dag_run.conf of the runs created.")
@click.option("--parallelism", "-p", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: $HEADWATER_PARALLELISM or CPUs).")
@click.option("--executor", type=click.Choice(["local", "inline", "dask"]), default="local", show_default=True)
@click.option("--dask-address", default=None,
              help="Dask scheduler for --executor dask, e.g. tcp://127.0.0.1:8786 (default: a local cluster).")
@pass_env
def backfill(env: Env, dag_id: str, start: str, end: str, rerun_failed: bool, conf: str | None,
             parallelism: int | None, executor: str, dask_address: str | None) -> None:
    """Create and run the runs of every interval between two dates (exit 1 if one fails)."""
    from rich.markup import escape

    from headwater.cli.running import make_executor, run_scheduler
    from headwater.clock import utcnow
    from headwater.orchestration.runs import parse_date, plan_backfill
    from headwater.orchestration.scheduler import SchedulerOptions
    from headwater.orchestration.states import RunState

    rec = env.dag(dag_id)
    params = _checked_conf(rec.spec, conf)
    first, last = parse_date(start), end_of(end)
    plan = plan_backfill(env.store, rec, first, last, utcnow(), rerun_failed=rerun_failed, conf=params)
    say(f"backfill {dag_id}: {len(plan.created)} new run(s), {len(plan.rerun)} rerun, "
        f"{len(plan.existing)} already there")
    runs = plan.runs
    if not runs:
        if plan.existing and not rerun_failed:
            say("[dim]nothing to do; --rerun-failed reruns the failed ones[/]")
        return
    opts = SchedulerOptions(only_runs={(r.dag_id, r.run_id) for r in runs}, take_lease=False)
    ex = make_executor(executor, _workers(executor, parallelism, dask_address, env), dask_address)
    report = run_scheduler(env, ex, opts, total_tasks=len(runs) * len(rec.spec.tasks), description="backfill")
    say(f"backfill of {escape(dag_id)} (times in UTC)")
    out = table("logical date", "state", Col("failed tasks", wrap=True))
    failed = 0
    for r in runs:
        final = report.finished.get((r.dag_id, r.run_id))
        failed += final is not RunState.SUCCESS
        bad = [] if final is RunState.SUCCESS else [
            ti.task_id for ti in env.store.list_task_instances(dag_id, r.run_id) if ti.state.value == "failed"]
        out.add_row(when(r.logical_date), state(final.value if final else "unfinished"), ", ".join(bad))
    console().print(out)
    if failed:
        say(f"[red]{failed} run(s) did not succeed[/]; see `headwater runs list {dag_id} --state failed`, "
            f"then `headwater dags backfill {dag_id} -s {start} -e {end} --rerun-failed`")
        raise SystemExit(1)


@dags.command("pause")
@click.argument("dag_id")
@pass_env
def pause(env: Env, dag_id: str) -> None:
    """Stop the scheduler from creating runs of a DAG."""
    env.dag(dag_id)
    env.store.set_paused(dag_id, True)
    say(f"{dag_id} paused")


@dags.command("unpause")
@click.argument("dag_id")
@pass_env
def unpause(env: Env, dag_id: str) -> None:
    """Let the scheduler create runs of a DAG again."""
    env.dag(dag_id)
    env.store.set_paused(dag_id, False)
    say(f"{dag_id} unpaused")



def _workers(executor: str, parallelism: int | None, dask_address: str | None, env: Env) -> int | None:
    """Slots to use: -p, else a remote Dask cluster's own thread count, else the local default."""
    if parallelism is not None:
        return parallelism
    return None if executor == "dask" and dask_address else env.settings.parallelism
