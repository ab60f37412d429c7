"""kill -9 of the scheduler or of a worker loses nothing: real processes, side effects counted in files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from headwater.orchestration.states import RunState, TaskState

from .conftest import Home

pytestmark = pytest.mark.slow

DAG_CODE = """
    import datetime as dt, os, time
    from pathlib import Path
    from headwater import DAG, PythonOperator

    OUT = Path({out!r})

    def work(name):
        # One line per execution: the side effect we count.
        with open(OUT / name, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep({sleep})

    with DAG("resilient", schedule=None, start_date=dt.datetime(2024, 1, 1),
             default_args={{"retries": 2, "retry_delay": dt.timedelta(seconds=0)}}):
        chain = [PythonOperator(task_id=f"step{{i}}", python_callable=work, op_args=[f"step{{i}}"])
                 for i in range(6)]
        for a, b in zip(chain, chain[1:]):
            a >> b
        for i in range(10):
            chain[0] >> PythonOperator(task_id=f"wide{{i}}", python_callable=work, op_args=[f"wide{{i}}"])
"""


def _start_scheduler(home: Home) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "headwater", "scheduler", "--until-idle", "-p", "2"],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _workers_of(home: Home) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "headwater.executor.worker" in " ".join(p.info["cmdline"] or []) and \
                    p.environ().get("HEADWATER_HOME") == str(home.settings.home):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _counts(out: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in out.iterdir()}


def _setup(home: Home, tmp_path: Path, sleep: float) -> tuple[Path, str]:
    out = tmp_path / "effects"
    out.mkdir()
    home.write_dag("resilient.py", DAG_CODE.format(out=str(out), sleep=sleep))
    home.cli("dags", "trigger", "resilient", "--run-id", "r1", check=True)
    return out, "r1"


def test_kill_scheduler_mid_run_then_restart_loses_nothing(home: Home, tmp_path: Path) -> None:
    out, run_id = _setup(home, tmp_path, sleep=0.4)
    sched = _start_scheduler(home)
    states = lambda: {t.task_id: t.state for t in home.store.list_task_instances("resilient", run_id)}  # noqa: E731
    _wait_for(lambda: sum(s is TaskState.SUCCESS for s in states().values()) >= 3
              and any(s is TaskState.RUNNING for s in states().values()), 60, "a run half done")
    sched.send_signal(signal.SIGKILL)
    sched.communicate(timeout=10)
    at_kill = states()
    done_before = {tid for tid, s in at_kill.items() if s is TaskState.SUCCESS}
    in_flight = {tid for tid, s in at_kill.items() if s in (TaskState.RUNNING, TaskState.QUEUED)}
    assert done_before and in_flight, at_kill
    # The workers die with their scheduler (parent-death signal / watchdog).
    _wait_for(lambda: not _workers_of(home), 10, "orphaned workers to exit")

    restarted = _start_scheduler(home)
    output, _ = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, output
    run = home.store.get_run("resilient", run_id)
    assert run.state is RunState.SUCCESS, output
    counts = _counts(out)
    assert set(counts) == set(at_kill)  # every task ran
    for tid in done_before:
        assert counts[tid] == 1, f"{tid} had succeeded before the kill and ran again"
    for tid, n in counts.items():
        assert n <= 2, f"{tid} ran {n} times"
        if n == 2:
            assert tid in in_flight
            tries = home.store.list_tries("resilient", run_id, tid)
            assert tries[0].state is TaskState.FAILED and "orphaned" in tries[0].reason
            assert tries[-1].state is TaskState.SUCCESS


def test_kill_worker_fails_only_that_try(home: Home, tmp_path: Path) -> None:
    out, run_id = _setup(home, tmp_path, sleep=0.5)
    sched = _start_scheduler(home)
    victim: dict[str, int] = {}

    def find_running() -> bool:
        for ti in home.store.list_task_instances("resilient", run_id, states=[TaskState.RUNNING]):
            if ti.pid and ti.task_id.startswith("wide"):
                victim[ti.task_id] = ti.pid
                return True
        return False

    _wait_for(find_running, 60, "a running wide task")
    ((task_id, pid),) = victim.items()
    os.kill(pid, signal.SIGKILL)
    output, _ = sched.communicate(timeout=120)
    assert sched.returncode == 0, output
    assert home.store.get_run("resilient", run_id).state is RunState.SUCCESS, output
    tries = home.store.list_tries("resilient", run_id, task_id)
    assert [t.state for t in tries] == [TaskState.FAILED, TaskState.SUCCESS]
    assert "SIGKILL" in tries[0].reason or "died" in tries[0].reason
    counts = _counts(out)
    assert counts[task_id] == 2
    assert all(n == 1 for tid, n in counts.items() if tid != task_id)
