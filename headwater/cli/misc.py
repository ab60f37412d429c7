"""``headwater runs|db|pools|scheduler|run``."""

from __future__ import annotations

import click

from headwater.cli.env import Env
from headwater.cli.output import console, seconds, state, when
from headwater.errors import UserError

pass_env = click.make_pass_decorator(Env)


@click.group()
def runs() -> None:
    """Work with DAG runs."""


@runs.command("list")
@click.argument("dag_id", required=False)
@click.option("--state", "states", multiple=True, help="Only runs in this state (repeatable).")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_env
def list_runs(env: Env, dag_id: str | None, states: tuple[str, ...], limit: int) -> None:
    """List DAG runs, newest first."""
    from rich.table import Table

    from headwater.orchestration.states import RunState

    try:
        wanted = [RunState(s) for s in states] or None
    except ValueError as exc:
        raise UserError(str(exc), hint=f"states: {', '.join(s.value for s in RunState)}") from exc
    rows = env.store.list_runs(dag_id, states=wanted, limit=limit)
    table = Table(title="DAG runs", title_justify="left")
    for col in ("dag_id", "run_id", "logical date", "type", "state", "started", "duration"):
        table.add_column(col, overflow="fold")
    for r in rows:
        dur = (r.end_date - r.start_date).total_seconds() if r.end_date and r.start_date else None
        table.add_row(r.dag_id, r.run_id, when(r.logical_date), r.run_type, state(r.state.value),
                      when(r.start_date), seconds(dur))
    console().print(table)


@click.group()
def db() -> None:
    """Manage the metadata database."""


@db.command("init")
@pass_env
def db_init(env: Env) -> None:
    """Create the schema (or bring it up to date) and the default pool."""
    from headwater.store.sql import open_store

    env.settings.home.mkdir(parents=True, exist_ok=True)
    store = open_store(env.settings.db_url)
    store.init()
    console().print(f"database ready: {_mask(store.url)}")


@db.command("upgrade")
@pass_env
def db_upgrade(env: Env) -> None:
    """Apply pending migrations."""
    from headwater.store.sql import open_store

    store = open_store(env.settings.db_url)
    store.init()
    console().print(f"database at the newest schema: {_mask(store.url)}")


@db.command("reset")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def db_reset(env: Env, yes: bool) -> None:
    """Drop every table and create them again (all history is lost)."""
    from headwater.store.sql import open_store

    if not yes and not click.confirm(f"erase all metadata in {_mask(env.settings.db_url)}?", default=False):
        raise SystemExit(1)
    store = open_store(env.settings.db_url)
    store.reset()
    console().print("database reset")


def _mask(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


@click.group()
def pools() -> None:
    """Named limits on how many task slots run at once."""


@pools.command("list")
@pass_env
def pools_list(env: Env) -> None:
    """List pools with their slots and use."""
    from rich.table import Table

    from headwater.orchestration.states import TaskState

    active = env.store.list_task_instances(states=(TaskState.QUEUED, TaskState.RUNNING))
    table = Table(title="pools", title_justify="left")
    for col in ("pool", "slots", "in use", "description"):
        table.add_column(col)
    for p in env.store.list_pools():
        used = sum(ti.pool_slots for ti in active if ti.pool == p.name)
        table.add_row(p.name, str(p.slots), str(used), p.description)
    console().print(table)


@pools.command("set")
@click.argument("name")
@click.argument("slots", type=click.IntRange(min=0))
@click.option("--description", default="")
@pass_env
def pools_set(env: Env, name: str, slots: int, description: str) -> None:
    """Create or resize a pool."""
    env.store.set_pool(name, slots, description)
    console().print(f"pool {name}: {slots} slots")


@pools.command("delete")
@click.argument("name")
@pass_env
def pools_delete(env: Env, name: str) -> None:
    """Delete a pool."""
    if name == "default_pool":
        raise UserError("the default pool cannot be deleted", hint="resize it with `headwater pools set`")
    env.store.delete_pool(name)
    console().print(f"pool {name} deleted")


@click.command("scheduler")
@click.option("--once", is_flag=True, help="One pass: create due runs, run what is ready, wait for it, exit.")
@click.option("--until-idle", is_flag=True, help="Exit when no run has work left that can run now.")
@click.option("--parallelism", "-p", type=int, default=None, help="Worker processes (default: CPUs).")
@click.option("--executor", type=click.Choice(["local", "inline"]), default="local")
@pass_env
def scheduler(env: Env, once: bool, until_idle: bool, parallelism: int | None, executor: str) -> None:
    """Create runs from schedules and run their tasks on local worker processes."""
    from headwater.cli.running import make_executor, run_scheduler
    from headwater.orchestration.scheduler import SchedulerOptions

    env.refresh_dags()
    opts = SchedulerOptions(once=once, until_idle=until_idle)
    out = console()
    out.print(f"scheduler: DAGs from {env.settings.dags_folder}, state in {_mask(env.settings.db_url)}")
    report = run_scheduler(env, make_executor(executor, parallelism or env.settings.parallelism), opts)
    for (dag_id, run_id), final in sorted(report.finished.items()):
        out.print(f"  {dag_id} {run_id}: {state(final.value)}")
    if report.stuck:
        out.print(f"[yellow]{len(report.stuck)} run(s) cannot go on now[/] (e.g. waiting on depends_on_past)")
    out.print(f"{report.tries} task tr{'y' if report.tries == 1 else 'ies'} run")


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("task_ref")
@click.option("--workers", type=int, default=None, help="Worker processes (default: CPUs).")
@click.option("--force", is_flag=True, help="Run tasks even when their outputs already exist.")
@click.pass_context
def run_classic(ctx: click.Context, task_ref: str, workers: int | None, force: bool) -> None:
    """Run a Luigi-style task class and what it requires: `headwater run module.Task --param x`."""
    from rich.table import Table

    from headwater.cli.running import make_executor
    from headwater.clock import utcnow
    from headwater.orchestration.classic import build_dag, parse_task_ref
    from headwater.orchestration.classic import task_ref as classic_task_ref
    from headwater.orchestration.runs import trigger
    from headwater.orchestration.scheduler import Scheduler, SchedulerOptions
    from headwater.orchestration.states import RunState

    env: Env = ctx.ensure_object(Env)
    root = parse_task_ref(task_ref, list(ctx.args))
    dag = build_dag(root, force=force)
    module_ref = f"classic:{classic_task_ref(type(root))}"
    spec = dag.to_spec(fileloc=module_ref)
    store = env.store
    record = store.upsert_dag(spec)
    run = trigger(store, record, utcnow(), conf=root.to_str_params())
    options = SchedulerOptions(only_runs={(spec.dag_id, run.run_id)}, take_lease=False, force=force)
    ex = make_executor("local", workers or env.settings.parallelism)
    report = Scheduler(store, ex, env.settings, options).run()
    tis = store.list_task_instances(spec.dag_id, run.run_id)
    table = Table(title=f"{task_ref}", title_justify="left")
    for col in ("task", "state", "note"):
        table.add_column(col, overflow="fold")
    for ti in tis:
        table.add_row(ti.task_id, state(ti.state.value), ti.reason)
    out = console()
    out.print(table)
    ran = sum(1 for ti in tis if ti.state.value == "success" and not ti.reason.startswith("already complete"))
    complete = sum(1 for ti in tis if ti.reason.startswith("already complete"))
    final = report.finished.get((spec.dag_id, run.run_id))
    out.print(f"{ran} task(s) ran, {complete} already complete; run {state(final.value if final else 'unfinished')}")
    if final is not RunState.SUCCESS:
        raise SystemExit(1)

