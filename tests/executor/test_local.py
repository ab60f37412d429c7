"""LocalExecutor: a pool of real worker processes, crashes, timeouts, kills and limits."""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from headwater.errors import ExecutorError
from headwater.executor.events import read_event_file
from headwater.executor.local import LocalExecutor

from .conftest import IMPORT_ROOT, RUNNER, TERMINAL, MakeWorkload, local_executor, run_one, wait_events

pytestmark = pytest.mark.timeout(30)


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


def _read_pid(path: Path, limit: float = 10.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.01)
    pytest.fail(f"{path} was not written within {limit}s")


def test_parallelism_limit_is_honoured(local: LocalExecutor, make_workload: MakeWorkload, tmp_path: Path) -> None:
    release = tmp_path / "release"
    first = make_workload("wait_for_file", "a", release=str(release))
    second = make_workload("wait_for_file", "b", release=str(release))
    third = make_workload("ok", "c")

    local.submit(first)
    local.submit(second)
    running = wait_events(local, lambda evs: len(evs) >= 2)

    # Both run at once, each on its own worker, and no slot is left for a third.
    assert {(e.key, e.state) for e in running} == {(first.key, "running"), (second.key, "running")}
    assert len({e.pid for e in running}) == 2
    assert local.running_keys() == {first.key, second.key}
    assert local.free_slots() == 0
    with pytest.raises(ExecutorError, match="all 2 are busy"):
        local.submit(third)

    release.touch()
    done = wait_events(local, lambda evs: sum(e.state == "success" for e in evs) == 2)
    assert {e.key for e in done if e.state == "success"} == {first.key, second.key}
    assert local.free_slots() == 2
    _, terminal = run_one(local, third)
    assert terminal.state == "success"


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("segfault", "worker process died: signal SIGSEGV (-11)"),
        ("exit3", "worker process exited with code 3"),
    ],
)
def test_worker_crash_fails_only_that_try_and_the_pool_recovers(
    local: LocalExecutor, make_workload: MakeWorkload, tmp_path: Path, action: str, reason: str
) -> None:
    release = tmp_path / "release"
    bystander = make_workload("wait_for_file", "bystander", release=str(release))
    crasher = make_workload(action, "crasher")
    local.submit(bystander)
    local.submit(crasher)

    events = wait_events(local, lambda evs: any(e.key == crasher.key and e.state in TERMINAL for e in evs))
    crashed = next(e for e in events if e.key == crasher.key and e.state == "failed")
    crashed_pid = next(e.pid for e in events if e.key == crasher.key and e.state == "running")
    assert crashed.reason == reason
    assert read_event_file(crasher.log_path) == crashed
    assert Path(crasher.log_path).read_text().splitlines()[-1].endswith(f": failed ({reason})")
    if action == "segfault":
        assert "Fatal Python error: Segmentation fault" in Path(crasher.log_path).read_text()
    assert local.running_keys() == {bystander.key}

    # The pool is whole again: a new worker takes the next try.
    _, after = run_one(local, make_workload("ok", "after"))
    assert after.state == "success"
    assert after.pid != crashed_pid
    assert len(local.worker_pids()) == 2
    assert _gone(crashed_pid)

    # The other worker kept running its try to the end.
    release.touch()
    events = wait_events(local, lambda evs: any(e.key == bystander.key for e in evs))
    assert [e.state for e in events if e.key == bystander.key] == ["success"]


def test_timeout_kills_the_task_children_and_dumps_the_stack(
    local: LocalExecutor, make_workload: MakeWorkload, tmp_path: Path
) -> None:
    sleep_arg = f"{30 + random.random():.6f}"  # a command line no other process has
    pid_file = tmp_path / "child.pid"
    workload = make_workload("spawn_sleep", timeout=0.5, sleep_arg=sleep_arg, pid_file=str(pid_file))
    workers_before = set(local.worker_pids())

    local.submit(workload)
    child = _read_pid(pid_file)
    events = wait_events(local, lambda evs: any(e.state in TERMINAL for e in evs))

    terminal = events[-1]
    assert terminal.state == "failed"
    assert terminal.reason == "timed out after 0.5s (execution_timeout)"
    assert _gone(child), "the task's sleep child outlived the timeout"
    assert not [
        p
        for p in psutil.process_iter(["cmdline", "status"])
        if p.info["cmdline"] == ["sleep", sleep_arg] and p.info["status"] != psutil.STATUS_ZOMBIE
    ]
    log = Path(workload.log_path).read_text()
    assert "in spawn_sleep" in log  # faulthandler's stack dump, taken before the kill
    assert terminal.pid in workers_before and terminal.pid not in local.worker_pids()
    assert len(local.worker_pids()) == 2


def test_kill_stops_a_running_try(local: LocalExecutor, make_workload: MakeWorkload, tmp_path: Path) -> None:
    workload = make_workload("wait_for_file", release=str(tmp_path / "never"))
    local.submit(workload)
    running = wait_events(local, lambda evs: len(evs) >= 1)[0]

    local.kill(workload.key, "marked failed by alice")

    assert workload.key in local.running_keys()  # until the event is read
    events = local.events(0)
    assert [(e.key, e.state, e.reason) for e in events] == [(workload.key, "failed", "marked failed by alice")]
    assert events[0].pid == running.pid and events[0].start == running.start
    assert local.running_keys() == set()
    assert _gone(running.pid)
    assert local.free_slots() == 2
    local.kill(workload.key)  # no longer running: nothing happens
    assert local.events(0) == []


def test_output_goes_to_the_log_not_the_protocol_or_the_executor_stdout(
    local: LocalExecutor, make_workload: MakeWorkload, capfd: pytest.CaptureFixture[str]
) -> None:
    _, terminal = run_one(local, make_workload("output"))

    assert terminal.state == "success"
    out, err = capfd.readouterr()
    assert "line from" not in out and "line from" not in err


def test_big_result_crosses_the_channel(local: LocalExecutor, make_workload: MakeWorkload) -> None:
    size = 5_000_000
    _, terminal = run_one(local, make_workload("big", size=size))

    assert terminal.state == "success"
    assert len(terminal.xcom["return_value"]["json"]) == size


def test_tasks_on_a_reused_worker_do_not_inherit_cwd_or_environment(
    make_workload: MakeWorkload, tmp_path: Path
) -> None:
    with local_executor(parallelism=1, cwd=str(tmp_path)) as ex:
        _, messed = run_one(ex, make_workload("mess_up_process", "a"))
        _, seen = run_one(ex, make_workload("report_process", "b"))

    assert messed.pid == seen.pid
    assert seen.xcom["cwd"] == {"json": str(tmp_path)}
    assert seen.xcom["leak"] == {"json": None}


def test_shutdown_kills_workers(make_workload: MakeWorkload, tmp_path: Path) -> None:
    ex = local_executor()
    ex.start()
    workload = make_workload("wait_for_file", release=str(tmp_path / "never"))
    ex.submit(workload)
    running = wait_events(ex, lambda evs: len(evs) >= 1)[0]
    pids = ex.worker_pids()

    ex.shutdown()
    ex.shutdown()

    assert all(_gone(pid, 0.5) for pid in pids)
    assert running.pid in pids
    assert [(e.key, e.reason) for e in ex.events(None)] == [(workload.key, "executor shut down")]
    with pytest.raises(ExecutorError, match="shut down"):
        ex.submit(make_workload("ok", "late"))


def test_submit_starts_workers_lazily(make_workload: MakeWorkload) -> None:
    with local_executor(parallelism=1) as ex:
        pass
    lazy = local_executor(parallelism=1)
    try:
        assert lazy.free_slots() == 1 and lazy.worker_pids() == []
        _, terminal = run_one(lazy, make_workload("ok"))
        assert terminal.state == "success"
    finally:
        lazy.shutdown()
    assert ex.worker_pids() == []


def test_events_none_returns_at_once_when_idle(local: LocalExecutor) -> None:
    assert local.events(None) == []


def test_workers_that_cannot_start_mark_the_executor_broken(make_workload: MakeWorkload) -> None:
    ex = LocalExecutor(parallelism=1, runner="x:y", env={"PYTHONHOME": "/nonexistent/python-home"})
    try:
        ex.start()
        events = wait_events(ex, lambda evs: ex.free_slots() == 0, limit=20)
        assert events == []
        with pytest.raises(ExecutorError, match="exited before they were ready"):
            ex.submit(make_workload("ok"))
    finally:
        ex.shutdown()


def test_bad_cwd_is_reported_at_start(tmp_path: Path) -> None:
    ex = local_executor(cwd=str(tmp_path / "missing"))
    with pytest.raises(ExecutorError, match="could not start a worker process"):
        ex.start()
    ex.shutdown()


def test_workers_and_task_children_die_with_the_scheduler(tmp_path: Path) -> None:
    sleep_arg = f"{30 + random.random():.6f}"
    script = Path(__file__).with_name("orphan_scheduler.py")
    scheduler = subprocess.Popen(
        [sys.executable, str(script), RUNNER, IMPORT_ROOT, str(tmp_path), sleep_arg],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert scheduler.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(scheduler.stdout, selectors.EVENT_READ)
            assert sel.select(15), "the stand-in scheduler did not report its workers"
        report = json.loads(scheduler.stdout.readline())
        assert report["task_worker"] in report["workers"]
        doomed = {report["child"], *report["workers"]}
        for worker in report["workers"]:  # their guard processes too
            doomed.update(p.pid for p in psutil.Process(worker).children(recursive=True))

        os.kill(scheduler.pid, signal.SIGKILL)
        scheduler.wait(5)

        alive = [pid for pid in doomed if not _gone(pid)]
        assert alive == [], f"processes outlived the scheduler: {alive}"
        assert len(doomed) >= 4  # 2 workers, the busy one's guard, the task's sleep
        # Anything still carrying the dead scheduler's pid on its command line (a
        # guard forked after the snapshot above) is gone too.
        marker = ["--parent-pid", str(scheduler.pid)]
        leftovers = [
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[-2:] == marker and not _gone(p.pid)
        ]
        assert leftovers == []
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait()
        assert scheduler.stdout is not None
        scheduler.stdout.close()


def test_a_worker_that_dies_while_idle_is_replaced(local: LocalExecutor, make_workload: MakeWorkload) -> None:
    victim = local.worker_pids()[0]

    os.kill(victim, signal.SIGKILL)
    wait_events(local, lambda evs: victim not in local.worker_pids(), limit=5)

    assert local.events(0.05) == []
    assert len(local.worker_pids()) == 2 and local.free_slots() == 2
    _, terminal = run_one(local, make_workload("ok"))
    assert terminal.state == "success"


def test_the_worker_module_imports_neither_the_database_layer_nor_the_cli() -> None:
    code = (
        "import sys, headwater.executor.worker\n"
        "heavy = {'sqlalchemy', 'alembic', 'click', 'rich', 'jinja2', 'fsspec'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('headwater.cli')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_processes_a_try_leaves_running_are_killed_when_it_ends(
    local: LocalExecutor, make_workload: MakeWorkload, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    workload = make_workload("leave_child", sleep_arg=f"{30 + random.random():.6f}", pid_file=str(pid_file))

    _, terminal = run_one(local, workload)

    assert terminal.state == "success"
    child, grandchild = terminal.xcom["child"]["json"], int(pid_file.read_text())
    assert _gone(child) and _gone(grandchild)
    assert "killed 2 process(es) the try left running" in Path(workload.log_path).read_text()
    _, after = run_one(local, make_workload("ok", "after"))
    assert after.state == "success"
