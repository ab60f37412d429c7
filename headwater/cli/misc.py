"""``headwater runs|db|pools|scheduler``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from headwater.cli.env import Env
from headwater.cli.output import Col, console, say, seconds, state, table, when
from headwater.errors import UserError

if TYPE_CHECKING:
    from headwater.monitoring.metrics import SchedulerMetrics
    from headwater.store.base import DagRunRecord

pass_env = click.make_pass_decorator(Env)


@click.group()
def runs() -> None:
    """Work with DAG runs."""


@runs.command("list")
@click.argument("dag_id", required=False)
@click.option("--state", "states", multiple=True, help="Only runs in this state (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--run-ids", is_flag=True, help="Show every run id (default: only those not <type>__<date>).")
@pass_env
def list_runs(env: Env, dag_id: str | None, states: tuple[str, ...], limit: int, run_ids: bool) -> None:
    """List DAG runs, newest first."""
    from rich.markup import escape

    from headwater.orchestration.runs import run_id_for
    from headwater.orchestration.states import RunState

    names = [s.value for s in RunState]
    for name in states:
        if name not in names:
            raise UserError(f"--state {name!r} is not a run state", hint=f"run states: {', '.join(names)}")
    wanted = [RunState(s) for s in states] or None
    if dag_id is not None:
        env.dag(dag_id)
    rows = env.store.list_runs(dag_id, states=wanted, limit=limit)
    # A run id is worth showing only when it says more than type and date.
    def usual(r: DagRunRecord) -> bool:
        return r.run_id == run_id_for(r.run_type, r.logical_date)

    show_ids = run_ids or not all(usual(r) for r in rows)
    cols: list[Col | str] = ["dag_id", "logical date", "type", "state", Col("duration", right=True)]
    if show_ids:
        cols.append(Col("run_id", wrap=True))
    out = table(*cols)
    for r in rows:
        dur = (r.end_date - r.start_date).total_seconds() if r.end_date and r.start_date else None
        cells = [escape(r.dag_id), when(r.logical_date), r.run_type, state(r.state.value), seconds(dur)]
        rid = escape(r.run_id) if run_ids or not usual(r) else "-"
        out.add_row(*cells, *([rid] if show_ids else []))
    if not rows:
        say("no runs" + (f" in state {', '.join(states)}" if states else ""))
        return
    say(f"DAG runs{f' of {escape(dag_id)}' if dag_id else ''}, newest first (times in UTC)")
    console().print(out)


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
    say(f"database ready: {_mask(store.url)}")
    _api_token(env)


def _api_token(env: Env) -> None:
    """Make the web API token on the first init and print it, the only time it is shown."""
    import os

    from headwater.web.auth import make_token, token_file

    if os.environ.get("HEADWATER_API_TOKEN"):
        say("web API token: HEADWATER_API_TOKEN (from the environment)")
        return
    token = make_token(env.settings)
    if token is None:
        say(f"[dim]web API token: already made (its hash is in {token_file(env.settings)}; "
            "delete that file and run `headwater db init` for a new one)[/]")
        return
    say(f"web API token (shown once, keep it): [bold]{token}[/]")
    say("[dim]`headwater web` takes it as `Authorization: Bearer <token>` and at its login page[/]")


@db.command("upgrade")
@pass_env
def db_upgrade(env: Env) -> None:
    """Apply pending migrations."""
    from headwater.store.sql import open_store

    store = open_store(env.settings.db_url)
    store.init()
    say(f"database at the newest schema: {_mask(store.url)}")


@db.command("reset")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def db_reset(env: Env, yes: bool) -> None:
    """Drop every table and create them again (all history is lost)."""
    from headwater.store.sql import open_store

    if not yes and not click.confirm(f"erase all metadata in {_mask(env.settings.db_url)}?", default=False):
        raise SystemExit(1)
    env.settings.home.mkdir(parents=True, exist_ok=True)
    store = open_store(env.settings.db_url)
    store.reset()
    say(f"database reset: {_mask(store.url)}")


def _mask(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show nothing secret
        return url.split("@")[-1]


@click.group()
def pools() -> None:
    """Named limits on how many task slots run at once."""


@pools.command("list")
@pass_env
def pools_list(env: Env) -> None:
    """List pools with their slots and use."""
    from rich.markup import escape

    from headwater.orchestration.states import TaskState

    active = env.store.list_task_instances(states=(TaskState.QUEUED, TaskState.RUNNING))
    out = table("pool", Col("slots", right=True), Col("in use", right=True), Col("description", wrap=True))
    for p in env.store.list_pools():
        used = sum(ti.pool_slots for ti in active if ti.pool == p.name)
        out.add_row(escape(p.name), str(p.slots), str(used), escape(p.description))
    console().print(out)


@pools.command("set")
@click.argument("name")
@click.argument("slots", type=click.IntRange(min=0))
@click.option("--description", default="")
@pass_env
def pools_set(env: Env, name: str, slots: int, description: str) -> None:
    """Create or resize a pool."""
    env.store.set_pool(name, slots, description)
    say(f"pool {name}: {slots} slot(s)")


@pools.command("delete")
@click.argument("name")
@pass_env
def pools_delete(env: Env, name: str) -> None:
    """Delete a pool."""
    env.store.delete_pool(name)
    say(f"pool {name} deleted")


@click.command("scheduler")
@click.option("--once", is_flag=True, help="One pass: create due runs, run what is ready, wait for it, exit.")
@click.option("--until-idle", is_flag=True, help="Exit when no run has work left that can run now.")
@click.option("--parallelism", "-p", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: $HEADWATER_PARALLELISM or CPUs).")
@click.option("--executor", type=click.Choice(["local", "inline", "dask"]), default="local", show_default=True)
@click.option("--dask-address", default=None,
              help="Dask scheduler for --executor dask, e.g. tcp://127.0.0.1:8786 (default: a local cluster).")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=None, metavar="PORT",
              help="Serve Prometheus /metrics on 127.0.0.1:PORT (default $HEADWATER_METRICS_PORT; 0 or unset: off).")
@pass_env
def scheduler(env: Env, once: bool, until_idle: bool, parallelism: int | None, executor: str,
              dask_address: str | None, metrics_port: int | None) -> None:
    """Create runs from schedules and run their tasks on worker processes (or a Dask cluster)."""
    from headwater.monitoring.prometheus import metrics_port as resolve_port

    port = resolve_port(metrics_port)
    metrics = server = None
    if port:
        from headwater.monitoring.metrics import SchedulerMetrics, new_registry
        from headwater.monitoring.prometheus import serve

        metrics = SchedulerMetrics(new_registry())
        server = serve(port, metrics.registry)  # before parsing: a port in use fails at once
        say(f"scheduler: metrics on {server.url}")
    try:
        _run_scheduler(env, once, until_idle, parallelism, executor, dask_address, metrics)
    finally:
        if server is not None:
            server.close()


def _run_scheduler(env: Env, once: bool, until_idle: bool, parallelism: int | None, executor: str,
                   dask_address: str | None, metrics: SchedulerMetrics | None) -> None:
    from rich.markup import escape

    from headwater.cli.running import make_executor, run_scheduler
    from headwater.orchestration.scheduler import SchedulerOptions

    summary = env.refresh_dags()
    if metrics is not None:
        metrics.parsed(summary)
    opts = SchedulerOptions(once=once, until_idle=until_idle)
    say(f"scheduler: DAGs from {escape(str(env.settings.dags_folder))}, "
        f"state in {escape(_mask(env.settings.db_url))}")
    from headwater.cli.dags import _workers

    ex = make_executor(executor, _workers(executor, parallelism, dask_address, env), dask_address)
    report = run_scheduler(env, ex, opts, description="scheduler", metrics=metrics)
    for (dag_id, run_id), final in sorted(report.finished.items()):
        say(f"  {escape(dag_id)} {escape(run_id)}: {state(final.value)}")
    if report.stuck:
        say(f"[yellow]{len(report.stuck)} run(s) cannot go on now[/] (e.g. waiting on depends_on_past)")
    say(f"{report.tries} task tr{'y' if report.tries == 1 else 'ies'} run")
