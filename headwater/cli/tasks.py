"""``headwater tasks ...``: test, clear, state, logs."""

from __future__ import annotations

import click

from headwater.cli.env import Env
from headwater.cli.output import console, state, task_table
from headwater.errors import TaskNotFoundError, UserError

pass_env = click.make_pass_decorator(Env)


@click.group()
def tasks() -> None:
    """Work with task instances."""


def _task(env: Env, dag_id: str, task_id: str) -> None:
    import difflib

    spec = env.dag(dag_id).spec
    if task_id not in spec.tasks:
        close = difflib.get_close_matches(task_id, list(spec.tasks), n=1)
        raise TaskNotFoundError(
            f"DAG {dag_id!r} has no task {task_id!r}",
            hint=f"did you mean {close[0]!r}?" if close else f"tasks: {', '.join(list(spec.tasks)[:20])}",
        )


@tasks.command("test")
@click.argument("dag_id")
@click.argument("task_id")
@click.argument("logical_date")
@click.option("--force", is_flag=True, help="Run even when the task's outputs already exist.")
@pass_env
def test(env: Env, dag_id: str, task_id: str, logical_date: str, force: bool) -> None:
    """Run one task now, ignoring its dependencies, and record nothing (exit 1 if it fails)."""
    import tempfile
    from pathlib import Path

    from headwater.executor.base import RunInfo, TaskKey, Workload
    from headwater.orchestration.runs import parse_date, run_id_for
    from headwater.orchestration.runtime import execute_workload
    from headwater.orchestration.schedules import timetable_for

    _task(env, dag_id, task_id)
    spec = env.dag(dag_id).spec
    interval = timetable_for(spec.schedule, spec.start_date).interval_for(parse_date(logical_date))
    run_id = run_id_for("test", interval.start)
    with tempfile.TemporaryDirectory(prefix="headwater-task-test-") as tmp:
        log = Path(tmp) / "task.log"
        workload = Workload(
            key=TaskKey(dag_id, run_id, task_id, 1),
            fileloc=spec.fileloc,
            run=RunInfo(run_id, interval.start.isoformat(), interval.start.isoformat(),
                        interval.end.isoformat(), run_type="test"),
            log_path=str(log),
            artifact_dir=str(Path(tmp) / "artifacts"),
            force=force,
            params=dict(spec.params),
            db_url=env.store.url,
        )
        event = execute_workload(workload)
        out = console()
        if log.exists():
            out.print(log.read_text(errors="replace"), markup=False, highlight=False, end="")
        out.print(f"{task_id}: {state(event.state)} {event.reason}")
    if event.state not in ("success", "skipped"):
        raise SystemExit(1)


def _runs(env: Env, dag_id: str, start: str | None, end: str | None) -> list:  # type: ignore[type-arg]
    from headwater.orchestration.runs import parse_date

    return env.store.list_runs(
        dag_id, start=parse_date(start) if start else None, end=parse_date(end) if end else None, limit=None
    )


@tasks.command("clear")
@click.argument("dag_id")
@click.option("--task", "-t", "task_regex", default=None, help="Regular expression on task ids.")
@click.option("--start", "-s", default=None, help="First logical date.")
@click.option("--end", "-e", default=None, help="Last logical date, inclusive.")
@click.option("--downstream", "-d", is_flag=True, help="Also clear tasks downstream of the matches.")
@click.option("--only-failed", "-f", is_flag=True, help="Only failed and upstream-failed task instances.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def clear(env: Env, dag_id: str, task_regex: str | None, start: str | None, end: str | None,
          downstream: bool, only_failed: bool, yes: bool) -> None:
    """Reset task instances so the scheduler runs them again."""
    import re

    from headwater.clock import utcnow
    from headwater.orchestration.runs import clear_task_instances

    spec = env.dag(dag_id).spec
    if task_regex:
        try:
            re.compile(task_regex)
        except re.error as exc:
            raise UserError(f"--task {task_regex!r} is not a valid regular expression: {exc}") from exc
    runs = _runs(env, dag_id, start, end)
    if not runs:
        console().print("no runs match")
        return
    if not yes and not click.confirm(f"clear tasks in {len(runs)} run(s) of {dag_id}?", default=False):
        raise SystemExit(1)
    cleared = clear_task_instances(env.store, spec, runs, task_regex=task_regex, downstream=downstream,
                                   only_failed=only_failed, now=utcnow())
    console().print(f"cleared {len(cleared)} task instance(s) in {len(runs)} run(s)")


def _find_run(env: Env, dag_id: str, logical_date: str):  # type: ignore[no-untyped-def]
    from headwater.orchestration.runs import parse_date

    env.dag(dag_id)
    run = env.store.find_run(dag_id, parse_date(logical_date))
    if run is None:
        run = env.store.get_run(dag_id, logical_date)
    if run is None:
        raise UserError(f"DAG {dag_id!r} has no run at {logical_date}",
                        hint=f"see the runs with `headwater runs list {dag_id}`")
    return run


@tasks.command("state")
@click.argument("dag_id")
@click.argument("task_id", required=False)
@click.argument("logical_date")
@pass_env
def state_cmd(env: Env, dag_id: str, task_id: str | None, logical_date: str) -> None:
    """Print the state of a task instance (or of every task of the run)."""
    run = _find_run(env, dag_id, logical_date)
    tis = env.store.list_task_instances(dag_id, run.run_id, task_ids=[task_id] if task_id else None)
    if task_id:
        if not tis:
            _task(env, dag_id, task_id)
        console().print(tis[0].state.value)
        return
    console().print(task_table(tis, title=f"{dag_id} {run.run_id}"))


@tasks.command("logs")
@click.argument("dag_id")
@click.argument("task_id")
@click.argument("logical_date")
@click.option("--try", "try_number", type=int, default=None, help="Try number (default: the latest).")
@pass_env
def logs(env: Env, dag_id: str, task_id: str, logical_date: str, try_number: int | None) -> None:
    """Print the log of one try of a task instance."""
    from pathlib import Path

    _task(env, dag_id, task_id)
    run = _find_run(env, dag_id, logical_date)
    tries = env.store.list_tries(dag_id, run.run_id, task_id)
    if not tries:
        raise UserError(f"{dag_id}.{task_id} has not run in {run.run_id}")
    chosen = tries[-1] if try_number is None else next((t for t in tries if t.try_number == try_number), None)
    if chosen is None:
        raise UserError(f"no try {try_number} of {task_id}",
                        hint=f"tries: {', '.join(str(t.try_number) for t in tries)}")
    path = Path(chosen.log_path or "").resolve()
    logs_root = env.settings.logs_folder.resolve()
    if not path.is_relative_to(logs_root) or not path.is_file():
        raise UserError(f"no log file for try {chosen.try_number} of {task_id}")
    out = console()
    out.print(f"[dim]# {path} ({state(chosen.state.value)}[dim], try {chosen.try_number})[/]")
    out.print(path.read_text(errors="replace"), markup=False, highlight=False, end="")
