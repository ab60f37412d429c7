"""``headwater tasks ...``: test, clear, state, logs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from headwater.cli.env import Env
from headwater.cli.output import console, raw, say, state, task_table, when
from headwater.errors import UserError

if TYPE_CHECKING:
    from headwater.store.base import DagRunRecord

pass_env = click.make_pass_decorator(Env)


@click.group()
def tasks() -> None:
    """Work with task instances."""


@tasks.command("test")
@click.argument("dag_id")
@click.argument("task_id")
@click.argument("logical_date")
@click.option("--force", is_flag=True, help="Run even when the task's outputs already exist.")
@pass_env
def test(env: Env, dag_id: str, task_id: str, logical_date: str, force: bool) -> None:
    """Run one task now, ignoring its dependencies, and record nothing (exit 1 if it fails).

    The task's log is printed; its results are thrown away.
    """
    import tempfile
    from pathlib import Path

    from headwater.executor.base import RunInfo, TaskKey, Workload
    from headwater.orchestration.runs import parse_date, run_id_for
    from headwater.orchestration.runtime import execute_workload
    from headwater.orchestration.schedules import timetable_for

    spec = env.task(dag_id, task_id)
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
        if log.exists():
            raw(log.read_text(errors="replace"))
    from rich.markup import escape

    say(f"{escape(task_id)}: {state(event.state)} {escape(event.reason or '')}")
    if event.state not in ("success", "skipped"):
        raise SystemExit(1)


def _runs(env: Env, dag_id: str, start: str | None, end: str | None) -> list[DagRunRecord]:
    from headwater.cli.dags import end_of
    from headwater.orchestration.runs import parse_date

    return env.store.list_runs(
        dag_id, start=parse_date(start) if start else None, end=end_of(end) if end else None, limit=None
    )


@tasks.command("clear")
@click.argument("dag_id")
@click.option("--task", "-t", "task_regex", default=None, help="Regular expression on task ids.")
@click.option("--start", "-s", default=None, help="First logical date.")
@click.option("--end", "-e", default=None, help="Last logical date, inclusive; a day alone includes all of it.")
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
            pattern = re.compile(task_regex)
        except re.error as exc:
            raise UserError(f"--task {task_regex!r} is not a valid regular expression: {exc}",
                            hint="escape special characters with a backslash, e.g. --task 'extract\\.csv'") from exc
        if not any(pattern.search(t) for t in spec.tasks):
            raise UserError(f"--task {task_regex!r} matches no task of {dag_id}",
                            hint=f"its tasks: {', '.join(sorted(spec.tasks)[:12])}")
    runs = _runs(env, dag_id, start, end)
    if not runs:
        say("no runs match")
        return
    if not yes and not click.confirm(f"clear tasks in {len(runs)} run(s) of {dag_id}?", default=False):
        raise SystemExit(1)
    cleared = clear_task_instances(env.store, spec, runs, task_regex=task_regex, downstream=downstream,
                                   only_failed=only_failed, now=utcnow())
    touched = {ti.run_id for ti in cleared}
    say(f"cleared {len(cleared)} task instance(s) in {len(touched)} run(s)")
    foreign = sorted({r.run_type for r in runs if r.run_id in touched and r.run_type in ("backfill", "test")})
    if foreign:
        say(f"[yellow]note:[/] {' and '.join(foreign)} runs are not run by `headwater scheduler`; "
            f"rerun them with `headwater dags {'backfill' if 'backfill' in foreign else 'test'} {dag_id} ...`")


@tasks.command("state")
@click.argument("dag_id")
@click.argument("task_id_or_date")
@click.argument("logical_date", required=False)
@pass_env
def state_cmd(env: Env, dag_id: str, task_id_or_date: str, logical_date: str | None) -> None:
    """Print the state of a task instance: `tasks state DAG TASK DATE`, or of every task: `tasks state DAG DATE`.

    DATE is a logical date, a run id, or a day; a day with several runs means the latest of
    them, whose run id is said on stderr (stdout keeps only the state, for scripts).
    """
    if logical_date is None:
        run = _run_or_latest_of_day(env, dag_id, task_id_or_date)
        tis = env.store.list_task_instances(dag_id, run.run_id)
        from rich.markup import escape

        say(f"{escape(dag_id)} at {when(run.logical_date)} UTC, run {escape(run.run_id)}")
        console().print(task_table(tis, env.dag(dag_id).spec.topological_order()))
        return
    task_id = task_id_or_date
    env.task(dag_id, task_id)
    run = _run_or_latest_of_day(env, dag_id, logical_date)
    ti = env.store.get_task_instance(dag_id, run.run_id, task_id)
    if ti is None:
        raise UserError(f"{task_id} has no task instance in {run.run_id}",
                        hint="the task was added after this run was created")
    say(ti.state.value)


def _run_or_latest_of_day(env: Env, dag_id: str, text: str) -> DagRunRecord:
    """The run ``text`` names; for a day with several runs the latest, said on stderr."""
    latest, runs_that_day = _latest_run_of_day(env, dag_id, text)
    if latest is None:
        return env.run(dag_id, text)
    click.echo(f"# {runs_that_day} runs of {dag_id} on {text}: the latest, {latest.run_id} (give a run id for "
               f"another; `headwater runs list {dag_id}`)", err=True)
    return latest


def _latest_run_of_day(env: Env, dag_id: str, text: str) -> tuple[DagRunRecord | None, int]:
    """When ``text`` is a day (``YYYY-MM-DD``, not a run id) with several runs: the latest of them, and how many."""
    import datetime as dt

    from headwater.orchestration.runs import parse_date

    if len(text) > 10 or env.store.get_run(dag_id, text) is not None:
        return None, 0
    try:
        day = parse_date(text)
    except UserError:
        return None, 0
    runs = env.store.list_runs(dag_id, start=day, end=day + dt.timedelta(days=1, microseconds=-1), limit=None)
    latest = max(runs, key=lambda r: r.logical_date, default=None)
    return (latest, len(runs)) if len(runs) > 1 else (None, len(runs))


@tasks.command("logs")
@click.argument("dag_id")
@click.argument("task_id")
@click.argument("date_or_run_id", metavar="DATE_OR_RUN_ID")
@click.option("--try", "try_number", type=click.IntRange(min=1), default=None, help="Try number (default: the latest).")
@pass_env
def logs(env: Env, dag_id: str, task_id: str, date_or_run_id: str, try_number: int | None) -> None:
    """Print the log of one try of a task instance.

    DATE_OR_RUN_ID is a run id (``headwater runs list DAG`` shows them), a logical date
    (``2024-05-01T12:00``), or a day. A day with several runs (``dags test DAG`` without a
    date makes a run at the current time on every call) means the latest of them: its run id
    is printed, with how many runs that day had; give a run id for another one. Only files
    inside the logs folder are read.
    """
    from rich.markup import escape

    from headwater.web.services.tasks import confined_log_path

    env.task(dag_id, task_id)
    latest, runs_that_day = _latest_run_of_day(env, dag_id, date_or_run_id)
    if latest is not None:
        run = latest
        say(f"[dim]# {runs_that_day} runs of {escape(dag_id)} on {escape(date_or_run_id)}: the latest, "
            f"{escape(run.run_id)} (give a run id for another; `headwater runs list {escape(dag_id)}`)[/]")
    else:
        run = env.run(dag_id, date_or_run_id)
    tries = env.store.list_tries(dag_id, run.run_id, task_id)
    if not tries:
        raise UserError(f"{dag_id}.{task_id} has not run in {run.run_id}",
                        hint=f"see its state with `headwater tasks state {dag_id} {task_id} {run.run_id}`")
    chosen = tries[-1] if try_number is None else next((t for t in tries if t.try_number == try_number), None)
    if chosen is None:
        raise UserError(f"{task_id} has no try {try_number} in {run.run_id}",
                        hint=f"its tries: {', '.join(str(t.try_number) for t in tries)}")
    path = confined_log_path(env.settings.logs_folder, chosen.log_path)
    if not path.is_file():
        raise UserError(f"the log file of try {chosen.try_number} of {task_id} is gone: {path}",
                        hint="logs may have been cleaned up; rerun the task to get a new one")
    say(f"[dim]# {escape(str(path))} ({chosen.state.value}, try {chosen.try_number} of {len(tries)})[/]")
    raw(path.read_text(errors="replace"))
