"""Executor fixtures: workloads in tmp_path, and executors that run tests/executor/runners.py.

The Dask executor runs on one local Dask cluster per test module (starting one
takes a second); each test connects its own executor to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from headwater.executor.base import Executor, RunInfo, TaskEvent, TaskKey, Workload
from headwater.executor.inline import InlineExecutor
from headwater.executor.local import LocalExecutor

from . import runners

if TYPE_CHECKING:
    from distributed import LocalCluster

    from headwater.executor.dask import DaskExecutor

RUNNER = f"{runners.__name__}:run"
# The folder that makes ``runners.__name__`` importable, whatever name pytest gave it.
IMPORT_ROOT = str(Path(runners.__file__).resolve().parents[runners.__name__.count(".")])
WORKER_ENV = {"PYTHONPATH": IMPORT_ROOT}
TERMINAL = {"success", "failed", "skipped", "up_for_reschedule"}

MakeWorkload = Callable[..., Workload]


@pytest.fixture
def make_workload(tmp_path: Path) -> MakeWorkload:
    """Build a workload whose runner action is ``action`` and whose log is under tmp_path."""

    def make(
        action: str = "ok", task_id: str = "t", *, try_number: int = 1, timeout: float | None = None, **params: Any
    ) -> Workload:
        when = "2024-01-01T00:00:00+00:00"
        return Workload(
            key=TaskKey("dag", "manual__1", task_id, try_number),
            fileloc="unused.py",
            run=RunInfo("manual__1", when, when, when),
            log_path=str(tmp_path / "logs" / "dag" / task_id / f"try={try_number}.log"),
            artifact_dir=str(tmp_path / "artifacts"),
            timeout=timeout,
            params={"action": action, **params},
        )

    return make


def local_executor(parallelism: int = 2, runner: str = RUNNER, **kwargs: Any) -> LocalExecutor:
    """A LocalExecutor whose workers can import the test runners."""
    return LocalExecutor(parallelism=parallelism, runner=runner, env=WORKER_ENV, **kwargs)


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[LocalCluster]:
    """A local Dask cluster of 2 single-threaded worker processes on 127.0.0.1, for one test module."""
    distributed = pytest.importorskip("distributed")
    from headwater.executor.dask import local_cluster_kwargs

    with distributed.LocalCluster(**local_cluster_kwargs(2)) as cluster:
        yield cluster


def dask_executor(cluster: LocalCluster, parallelism: int | None = 2, runner: str = RUNNER) -> DaskExecutor:
    """A DaskExecutor on ``cluster`` whose tries can import the test runners."""
    from headwater.executor.dask import DaskExecutor

    return DaskExecutor(cluster.scheduler_address, parallelism=parallelism, runner=runner, env=WORKER_ENV)


@pytest.fixture(params=["inline", "local", pytest.param("dask", marks=pytest.mark.slow)])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """Each executor, started; shut down after the test."""
    ex: Executor
    if request.param == "dask":
        ex = dask_executor(request.getfixturevalue("dask_cluster"))
    else:
        ex = InlineExecutor(RUNNER) if request.param == "inline" else local_executor()
    ex.start()
    try:
        yield ex
    finally:
        ex.shutdown()


@pytest.fixture
def local() -> Iterator[LocalExecutor]:
    """A started LocalExecutor with 2 workers."""
    with local_executor() as ex:
        yield ex


def wait_events(ex: Executor, done: Callable[[list[TaskEvent]], bool], limit: float = 15.0) -> list[TaskEvent]:
    """Collect events until ``done(events so far)``; fail the test after ``limit`` seconds."""
    events: list[TaskEvent] = []
    deadline = time.monotonic() + limit
    while not done(events):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no expected event within {limit}s; got {events}")
        events += ex.events(min(left, 1.0))
    return events


def run_one(ex: Executor, workload: Workload, limit: float = 15.0) -> tuple[list[TaskEvent], TaskEvent]:
    """Submit ``workload``; return all events seen and its terminal event."""
    ex.submit(workload)
    events = wait_events(ex, lambda evs: any(_ends(e, workload.key) for e in evs), limit)
    terminal = next(e for e in events if _ends(e, workload.key))
    return events, terminal


def _ends(event: TaskEvent, key: TaskKey) -> bool:
    return event.key == key and event.state in TERMINAL
