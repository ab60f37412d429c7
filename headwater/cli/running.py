"""Running a scheduler from a command, with a Rich progress bar on a terminal."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

from headwater.cli.output import console

if TYPE_CHECKING:
    from headwater.cli.env import Env
    from headwater.executor.base import Executor
    from headwater.monitoring.metrics import SchedulerMetrics
    from headwater.orchestration.scheduler import Scheduler, SchedulerOptions, SchedulerReport


def make_executor(kind: str, parallelism: int | None, dask_address: str | None = None) -> Executor:
    """``local``: a pool of worker processes; ``inline``: in this process, one at a time;
    ``dask``: a Dask distributed cluster (``dask_address``, or a local one on 127.0.0.1)."""
    if kind == "inline":
        from headwater.executor.inline import InlineExecutor

        return InlineExecutor()
    if kind == "dask":
        from headwater.executor.dask import DaskExecutor

        return DaskExecutor(dask_address, parallelism=parallelism)
    from headwater.executor.local import LocalExecutor

    return LocalExecutor(parallelism=parallelism)


@contextlib.contextmanager
def _stop_on_signals(scheduler: Scheduler) -> Iterator[None]:
    """SIGTERM/SIGINT end the loop after the current step; tasks in flight are killed
    and recorded as failed tries (retried by their policy on the next start)."""

    def handler(signum: int, frame: object) -> None:
        scheduler.stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_scheduler(
    env: Env, executor: Executor, options: SchedulerOptions, *, total_tasks: int | None = None,
    description: str = "running", metrics: SchedulerMetrics | None = None,
) -> SchedulerReport:
    """Run a scheduler to its end; show progress on a terminal (never in a pipe).

    With ``total_tasks`` a bar of finished task instances; without, a live count of
    tries and finished runs (a scheduler that runs until stopped has no total).
    """
    from headwater.orchestration.scheduler import Scheduler

    refresh = env.refresh_dags if options.only_runs is None else None
    out = console()
    if not out.is_terminal:
        scheduler = Scheduler(env.store, executor, env.settings, options, refresh_dags=refresh, metrics=metrics)
        with _stop_on_signals(scheduler):
            return scheduler.run()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        if total_tasks
        else [SpinnerColumn(), TextColumn("{task.description}: {task.fields[status]}"), TimeElapsedColumn()]
    )
    with Progress(*columns, console=out, transient=not total_tasks) as progress:
        bar = progress.add_task(description, total=total_tasks, status="starting")

        def on_step(s: Scheduler) -> None:
            if total_tasks:
                progress.update(bar, completed=min(s.report.progress(s), total_tasks))
            else:
                runs = len(s.report.finished)
                progress.update(bar, status=f"{s.report.tries} task tries, {runs} run(s) finished")

        scheduler = Scheduler(env.store, executor, env.settings, options, refresh_dags=refresh, on_step=on_step,
                              metrics=metrics)
        with _stop_on_signals(scheduler):
            report = scheduler.run()
        if total_tasks:
            progress.update(bar, completed=min(report.tasks_done, total_tasks))
        return report
