"""``headwater dags ...``: list, show, test, trigger, backfill, pause, unpause."""

from __future__ import annotations

import json

import click

from headwater.cli.env import Env
from headwater.cli.output import console, seconds, state, task_table
from headwater.errors import UserError

pass_env = click.make_pass_decorator(Env)


@click.group()
def dags() -> None:
    """Work with DAGs."""


@dags.command("list")
@click.option("--reparse", is_flag=True, help="Parse every file again, changed or not.")
@pass_env
def list_dags(env: Env, reparse: bool) -> None:
    """List DAGs in the DAG folder, and the files that failed to load."""
    from rich.markup import escape
    from rich.table import Table

    env.refresh_dags(force=reparse)
    store = env.store
    table = Table(title=f"DAGs in {env.settings.dags_folder}", title_justify="left")
    for col in ("dag_id", "schedule", "tasks", "paused", "owner", "tags", "last run", "file"):
        table.add_column(col, overflow="fold")
    for rec in sorted(store.list_dags(), key=lambda r: r.dag_id):
        last = store.list_runs(rec.dag_id, limit=1)
        last_txt = f"{last[0].logical_date:%Y-%m-%d} {state(last[0].state.value)}" if last else "-"
        table.add_row(
            rec.dag_id, rec.spec.schedule or "None", str(len(rec.spec.tasks)), "yes" if rec.is_paused else "no",
            rec.spec.owner, ", ".join(rec.spec.tags), last_txt, _short(rec.fileloc, env),
        )
    out = console()
    out.print(table)
    errors = store.list_import_errors()
    if errors:
        out.print(f"\n[bold red]{len(errors)} DAG file(s) failed to load:[/]")
        for e in errors:
            where = f"{_short(e.path, env)}" + (f":{e.lineno}" if e.lineno else "")
            out.print(f"  [red]{escape(where)}[/] [dim]({e.kind})[/] {escape(e.message)}")


def _short(path: str, env: Env) -> str:
    folder = str(env.settings.dags_folder) + "/"
    return path[len(folder):] if path.startswith(folder) else path


@dags.command("show")
@click.argument("dag_id")
@pass_env
def show(env: Env, dag_id: str) -> None:
    """Show a DAG's tasks as a tree and as a layered graph."""
    from headwater.cli.graph import render_graph, render_tree

    rec = env.dag(dag_id)
    spec = rec.spec
    out = console()
    out.print(f"[bold]{spec.dag_id}[/]  schedule={spec.schedule or 'None'}  "
              f"start={spec.start_date:%Y-%m-%d}  catchup={spec.catchup}" if spec.start_date else
              f"[bold]{spec.dag_id}[/]  schedule={spec.schedule or 'None'}")
    if spec.description:
        out.print(spec.description)
    out.print(render_tree(spec))
    out.print(render_graph(spec))


@dags.command("test")
@click.argument("dag_id")
@click.argument("logical_date", required=False)
@click.option("--conf", default=None, help="JSON object passed to the run as dag_run.conf.")
@click.option("--force", is_flag=True, help="Run tasks even when their outputs already exist.")
@pass_env
def test(env: Env, dag_id: str, logical_date: str | None, conf: str | None, force: bool) -> None:
    """Run one DAG run in this process, without a scheduler (exit 1 if it fails)."""
    from headwater.clock import utcnow
    from headwater.executor.inline import InlineExecutor
    from headwater.orchestration.runs import clear_task_instances, parse_date, trigger
    from headwater.orchestration.scheduler import Scheduler, SchedulerOptions
    from headwater.orchestration.states import RunState, RunType

    rec = env.dag(dag_id)
    now = utcnow()
    when = parse_date(logical_date) if logical_date else now
    store = env.store
    interval_start = when
    existing = store.find_run(dag_id, interval_start)
    if existing is not None:
        clear_task_instances(store, rec.spec, [existing], now=now)
        run = existing
    else:
        run = trigger(store, rec, now, logical_date=when, conf=_conf(conf), run_type=RunType.TEST)
    options = SchedulerOptions(only_runs={(dag_id, run.run_id)}, take_lease=False, force=force)
    report = Scheduler(store, InlineExecutor(), env.settings, options).run()
    final = report.finished.get((dag_id, run.run_id))
    tis = store.list_task_instances(dag_id, run.run_id)
    out = console()
    out.print(task_table(tis, title=f"{dag_id} run {run.run_id}"))
    verdict = final.value if final else "unfinished"
    out.print(f"run {state(verdict)}")
    if final is not RunState.SUCCESS:
        raise SystemExit(1)


def _conf(text: str | None) -> dict[str, object]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--conf is not valid JSON: {exc}", hint='write e.g. --conf \'{"x": 1}\'') from exc
    if not isinstance(value, dict):
        raise UserError("--conf must be a JSON object", hint='write e.g. --conf \'{"x": 1}\'')
    return value


@dags.command("trigger")
@click.argument("dag_id")
@click.option("--conf", default=None, help="JSON object for dag_run.conf.")
@click.option("--date", "logical_date", default=None, help="Logical date (default: now).")
@click.option("--run-id", default=None)
@pass_env
def trigger_cmd(env: Env, dag_id: str, conf: str | None, logical_date: str | None, run_id: str | None) -> None:
    """Queue a manual run; the scheduler runs it."""
    from headwater.clock import utcnow
    from headwater.orchestration.runs import parse_date, trigger

    rec = env.dag(dag_id)
    when = parse_date(logical_date) if logical_date else None
    run = trigger(env.store, rec, utcnow(), logical_date=when, conf=_conf(conf), run_id=run_id)
    console().print(f"queued run [bold]{run.run_id}[/] of {dag_id}")


@dags.command("backfill")
@click.argument("dag_id")
@click.option("--start", "-s", required=True, help="First logical date (YYYY-MM-DD).")
@click.option("--end", "-e", required=True, help="Last logical date, inclusive.")
@click.option("--rerun-failed", is_flag=True, help="Clear and rerun failed tasks of existing failed runs.")
@click.option("--parallelism", "-p", type=int, default=None, help="Worker processes (default: CPUs).")
@click.option("--executor", type=click.Choice(["local", "inline"]), default="local")
@pass_env
def backfill(env: Env, dag_id: str, start: str, end: str, rerun_failed: bool, parallelism: int | None,
             executor: str) -> None:
    """Create and run the runs of every interval between two dates."""
    from headwater.cli.running import make_executor, run_scheduler
    from headwater.clock import utcnow
    from headwater.orchestration.runs import parse_date, plan_backfill
    from headwater.orchestration.scheduler import SchedulerOptions
    from headwater.orchestration.states import RunState

    rec = env.dag(dag_id)
    plan = plan_backfill(env.store, rec, parse_date(start), parse_date(end), utcnow(), rerun_failed=rerun_failed)
    out = console()
    out.print(f"backfill {dag_id}: {len(plan.created)} new run(s), {len(plan.rerun)} rerun, "
              f"{len(plan.existing)} already there")
    runs = plan.runs
    if not runs:
        return
    opts = SchedulerOptions(only_runs={(r.dag_id, r.run_id) for r in runs}, take_lease=False)
    ex = make_executor(executor, parallelism or env.settings.parallelism)
    report = run_scheduler(env, ex, opts, total_tasks=len(runs) * len(rec.spec.tasks), description="backfill")
    from rich.table import Table

    table = Table(title=f"backfill of {dag_id}", title_justify="left")
    for col in ("logical date", "run", "state"):
        table.add_column(col)
    failed = 0
    for r in runs:
        final = report.finished.get((r.dag_id, r.run_id))
        failed += final is not RunState.SUCCESS
        table.add_row(f"{r.logical_date:%Y-%m-%d %H:%M}", r.run_id, state(final.value if final else "unfinished"))
    out.print(table)
    if failed:
        out.print(f"[red]{failed} run(s) did not succeed[/]; see `headwater runs list {dag_id}`")
        raise SystemExit(1)


@dags.command("pause")
@click.argument("dag_id")
@pass_env
def pause(env: Env, dag_id: str) -> None:
    """Stop the scheduler from creating runs of a DAG."""
    env.dag(dag_id)
    env.store.set_paused(dag_id, True)
    console().print(f"{dag_id} paused")


@dags.command("unpause")
@click.argument("dag_id")
@pass_env
def unpause(env: Env, dag_id: str) -> None:
    """Let the scheduler create runs of a DAG again."""
    env.dag(dag_id)
    env.store.set_paused(dag_id, False)
    console().print(f"{dag_id} unpaused")


__all__ = ["dags", "seconds"]
