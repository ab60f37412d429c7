"""DaskExecutor on a real local Dask cluster: where tries run, how they end, and a DAG through the scheduler.

The behaviour every executor shares is in test_executors.py (its ``dask``
parameter); these are the Dask-specific parts. One cluster serves the module.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from headwater.errors import ExecutorError
from headwater.executor.dask import DaskExecutor, local_cluster_kwargs
from headwater.executor.events import read_event_file
from headwater.executor.worker import DEFAULT_RUNNER

from ..orchestration.conftest import Home
from .conftest import RUNNER, TERMINAL, WORKER_ENV, MakeWorkload, dask_executor, run_one, wait_events

if TYPE_CHECKING:
    from distributed import LocalCluster

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture
def dask(dask_cluster: LocalCluster) -> Iterator[DaskExecutor]:
    """A started DaskExecutor with 2 slots on the module's cluster."""
    with dask_executor(dask_cluster) as ex:
        yield ex


def _gone(pid: int, limit: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaps counts as gone)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def _worker_pids(ex: DaskExecutor) -> dict[str, int]:
    assert ex.client is not None
    return ex.client.run(os.getpid)


def test_a_try_runs_in_a_child_process_of_a_dask_worker(
    dask: DaskExecutor, make_workload: MakeWorkload, tmp_path: Path
) -> None:
    workers = _worker_pids(dask)
    workload = make_workload("wait_for_file", release=str(tmp_path / "go"))
    dask.submit(workload)
    running = wait_events(dask, lambda evs: len(evs) >= 1)[0]

    assert running.state == "running" and running.pid is not None
    assert running.pid != os.getpid() and running.pid not in workers.values()
    assert psutil.Process(running.pid).ppid() in workers.values()
    assert os.getpgid(running.pid) == running.pid  # its own process group, so kills take its children

    Path(workload.params["release"]).touch()
    events = wait_events(dask, lambda evs: any(e.state in TERMINAL for e in evs))
    assert [(e.state, e.pid) for e in events] == [("success", running.pid)]
    assert events[0].xcom["pid"] == {"json": running.pid}
    assert _gone(running.pid)
    assert dask.running_keys() == set() and dask.free_slots() == 2


def test_timeout_kills_the_try_and_its_children_and_the_cluster_runs_the_next(
    dask: DaskExecutor, make_workload: MakeWorkload, tmp_path: Path
) -> None:
    workers = _worker_pids(dask)
    pid_file = tmp_path / "child.pid"
    workload = make_workload(
        "spawn_sleep", timeout=0.5, sleep_arg=f"{30 + random.random():.6f}", pid_file=str(pid_file)
    )

    events, terminal = run_one(dask, workload)

    assert [e.state for e in events] == ["running", "failed"]
    assert terminal.reason == "timed out after 0.5s (execution_timeout)"
    assert terminal.pid == events[0].pid and _gone(terminal.pid)
    assert _gone(int(pid_file.read_text())), "the task's sleep child outlived the timeout"
    log = Path(workload.log_path).read_text()
    assert "in spawn_sleep" in log  # the stack dump taken before the kill
    assert log.splitlines()[-1].endswith(": failed (timed out after 0.5s (execution_timeout))")
    assert read_event_file(workload.log_path) == terminal
    # The Dask workers were never stuck nor restarted: the next try runs on them.
    _, after = run_one(dask, make_workload("ok", "next", value=1))
    assert after.state == "success" and after.xcom == {"return_value": {"json": 1}}
    assert _worker_pids(dask) == workers


@pytest.mark.parametrize(
    ("action", "reason"),
    [("exit3", "worker process exited with code 3"), ("segfault", "worker process died: signal SIGSEGV (-11)")],
)
def test_a_crashing_try_fails_alone(
    dask: DaskExecutor, make_workload: MakeWorkload, tmp_path: Path, action: str, reason: str
) -> None:
    workers = _worker_pids(dask)
    release = tmp_path / "release"
    bystander = make_workload("wait_for_file", "bystander", release=str(release))
    crasher = make_workload(action, "crasher")
    dask.submit(bystander)
    dask.submit(crasher)

    events = wait_events(dask, lambda evs: any(e.key == crasher.key and e.state in TERMINAL for e in evs))

    crashed = next(e for e in events if e.key == crasher.key and e.state == "failed")
    assert crashed.reason == reason
    assert read_event_file(crasher.log_path) == crashed
    assert Path(crasher.log_path).read_text().splitlines()[-1].endswith(f": failed ({reason})")
    assert dask.running_keys() == {bystander.key}
    release.touch()
    events = wait_events(dask, lambda evs: any(e.key == bystander.key and e.state in TERMINAL for e in evs))
    assert [e.state for e in events if e.key == bystander.key and e.state in TERMINAL] == ["success"]
    assert _worker_pids(dask) == workers


def test_kill_stops_a_running_try(dask: DaskExecutor, make_workload: MakeWorkload, tmp_path: Path) -> None:
    workload = make_workload("wait_for_file", release=str(tmp_path / "never"))
    dask.submit(workload)
    running = wait_events(dask, lambda evs: len(evs) >= 1)[0]

    dask.kill(workload.key, "marked failed by alice")

    events = wait_events(dask, lambda evs: len(evs) >= 1)
    assert [(e.key, e.state, e.reason) for e in events] == [(workload.key, "failed", "marked failed by alice")]
    assert events[0].pid == running.pid and events[0].start == running.start
    assert _gone(running.pid)
    assert read_event_file(workload.log_path) == events[0]
    assert dask.running_keys() == set() and dask.free_slots() == 2
    dask.kill(workload.key)  # no longer running: nothing happens
    assert dask.events(0.2) == []


def test_kill_of_a_try_dask_has_not_started_reports_it_at_once(
    dask_cluster: LocalCluster, make_workload: MakeWorkload, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    # Three slots on two single-threaded workers: the third try waits in Dask.
    with dask_executor(dask_cluster, parallelism=3) as ex:
        busy = [make_workload("wait_for_file", f"busy{i}", release=str(release)) for i in range(2)]
        for workload in busy:
            ex.submit(workload)
        wait_events(ex, lambda evs: len(evs) >= 2)
        waiting = make_workload("ok", "waiting")
        ex.submit(waiting)

        ex.kill(waiting.key, "cancelled by bob")

        assert [(e.key, e.state, e.reason) for e in ex.events(0)] == [(waiting.key, "failed", "cancelled by bob")]
        release.touch()
        events = wait_events(ex, lambda evs: sum(e.state in TERMINAL for e in evs) >= 2)
    assert sorted(e.state for e in events) == ["success", "success"]
    assert "started" not in Path(waiting.log_path).read_text()  # it never ran
    event = read_event_file(waiting.log_path)
    assert event is not None and event.reason == "cancelled by bob"


def test_a_dask_worker_that_dies_fails_its_try_and_takes_the_try_along(
    dask: DaskExecutor, dask_cluster: LocalCluster, make_workload: MakeWorkload, tmp_path: Path
) -> None:
    workload = make_workload("wait_for_file", release=str(tmp_path / "never"))
    dask.submit(workload)
    running = wait_events(dask, lambda evs: len(evs) >= 1)[0]
    assert running.pid is not None
    dask_worker = psutil.Process(running.pid).ppid()

    os.kill(dask_worker, signal.SIGKILL)

    events = wait_events(dask, lambda evs: any(e.state in TERMINAL for e in evs))
    assert [(e.state, e.reason) for e in events] == [
        ("failed", "Dask worker process died while running the try (KilledWorker)")
    ]
    assert _gone(running.pid), "the try outlived its Dask worker"
    assert read_event_file(workload.log_path) == events[0]
    # The nanny starts a new worker; the executor carries on with it.
    assert dask.client is not None
    dask.client.wait_for_workers(2, timeout=20)
    _, after = run_one(dask, make_workload("ok", "after"))
    assert after.state == "success"


def test_an_executor_without_address_starts_and_closes_its_own_loopback_cluster(
    make_workload: MakeWorkload, tmp_path: Path
) -> None:
    ex = DaskExecutor(parallelism=1, runner=RUNNER, env=WORKER_ENV)
    ex.start()
    try:
        assert ex.client is not None and ex.parallelism == 1
        info = ex.client.scheduler_info()
        address = info["address"]
        assert address.startswith("tcp://127.0.0.1:")
        assert [w.startswith("tcp://127.0.0.1:") for w in info["workers"]] == [True]
        workload = make_workload("wait_for_file", release=str(tmp_path / "never"))
        ex.submit(workload)
        running = wait_events(ex, lambda evs: len(evs) >= 1)[0]
    finally:
        ex.shutdown()

    terminal = [e for e in ex.events(0) if e.state in TERMINAL]
    assert [(e.key, e.state, e.reason) for e in terminal] == [(workload.key, "failed", "executor shut down")]
    assert terminal[0].pid == running.pid and _gone(running.pid)
    assert ex.free_slots() == 0 and ex.running_keys() == set()
    with pytest.raises(ExecutorError, match="shut down"):
        ex.submit(make_workload("ok", "late"))
    # The cluster is gone with it.
    with pytest.raises(ExecutorError, match=f"could not connect to the Dask scheduler at {address}"):
        DaskExecutor(address, connect_timeout=0.5).start()


def test_a_bad_address_says_what_to_do() -> None:
    with pytest.raises(ExecutorError, match="unknown address scheme 'nope'") as err:
        DaskExecutor("nope://127.0.0.1:1").start()
    assert "local cluster" in (err.value.hint or "")


def test_neither_headwater_nor_the_scheduler_imports_dask() -> None:
    code = (
        "import sys, headwater, headwater.orchestration.scheduler, headwater.executor.dask\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'dask', 'distributed'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_dag_runs_end_to_end_through_the_scheduler(dask_cluster: LocalCluster, tmp_path: Path) -> None:
    from headwater.orchestration.runs import trigger
    from headwater.orchestration.scheduler import Scheduler, SchedulerOptions
    from headwater.orchestration.states import RunState, TaskState
    from headwater.settings import Settings
    from headwater.store.sql import open_store

    dags = tmp_path / "dags"
    dags.mkdir()
    (tmp_path / "home").mkdir()
    settings = Settings.from_env(
        {"HEADWATER_HOME": str(tmp_path / "home"), "HEADWATER_DAGS_FOLDER": str(dags)},
        parallelism=2,
        min_file_process_interval=3600.0,
        dag_parse_timeout=10.0,
    )
    home = Home(tmp_path, settings, open_store(settings.db_url, create=True))
    out = tmp_path / "loaded.txt"
    home.write_dag(
        "flow.py",
        f"""
        import datetime as dt
        from headwater import dag, task, BashOperator

        @dag(schedule=None, start_date=dt.datetime(2024, 1, 1))
        def flow():
            @task
            def extract():
                return {{"rows": [1, 2, 3]}}

            @task
            def double(data):
                return [2 * r for r in data["rows"]]

            @task
            def load(rows):
                open({str(out)!r}, "w").write(",".join(map(str, rows)))
                return sum(rows)

            load(double(extract())) >> BashOperator(task_id="announce", bash_command="echo loaded")

        flow()
        """,
    )
    try:
        home.refresh()
        run = trigger(home.store, home.store.get_dag("flow"), dt.datetime.now(dt.UTC))
        with dask_executor(dask_cluster, runner=DEFAULT_RUNNER) as ex:
            scheduler = Scheduler(
                home.store, ex, settings, SchedulerOptions(until_idle=True, heartbeat=0.2), refresh_dags=home.refresh
            )
            scheduler.run()

        assert home.store.get_run("flow", run.run_id).state is RunState.SUCCESS
        tis = home.store.list_task_instances("flow", run.run_id)
        assert {t.task_id: t.state for t in tis} == dict.fromkeys(
            ["extract", "double", "load", "announce"], TaskState.SUCCESS
        )
        assert {t.hostname for t in tis} == {socket.gethostname()}
        assert os.getpid() not in {t.pid for t in tis}
        assert out.read_text() == "2,4,6"
        (result,) = home.store.get_xcoms("flow", run.run_id, ["load"], "return_value")
        assert result.value == {"json": 12}
        (announce,) = home.store.list_tries("flow", run.run_id, "announce")
        assert announce.log_path is not None and "loaded" in Path(announce.log_path).read_text()
    finally:
        home.store.close()


def test_a_cluster_without_workers_is_refused_unless_parallelism_is_given() -> None:
    with distributed.LocalCluster(**local_cluster_kwargs(0)) as empty:
        with pytest.raises(ExecutorError, match=r"has no workers after 0\.5s") as err:
            DaskExecutor(empty.scheduler_address, connect_timeout=0.5).start()
        assert "parallelism" in (err.value.hint or "")
        with DaskExecutor(empty.scheduler_address, parallelism=1) as ex:
            assert ex.free_slots() == 1
