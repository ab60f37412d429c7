"""Behaviour both executors share: run a try, report it, log it, record its event."""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import replace
from pathlib import Path
from types import FrameType

import pytest

from headwater.executor.base import Executor
from headwater.executor.events import event_path, read_event_file
from headwater.executor.inline import InlineExecutor

from .conftest import RUNNER, MakeWorkload, run_one

pytestmark = pytest.mark.timeout(30)


def test_success_reports_running_then_success_with_xcom(executor: Executor, make_workload: MakeWorkload) -> None:
    workload = make_workload("ok", value={"rows": 3})

    events, terminal = run_one(executor, workload)

    assert [e.state for e in events] == ["running", "success"]
    running = events[0]
    assert running.pid is not None and running.hostname == socket.gethostname() and running.start
    assert terminal.xcom == {"return_value": {"json": {"rows": 3}}}
    assert terminal.pid == running.pid
    assert terminal.start is not None and terminal.end is not None and terminal.end >= terminal.start
    assert executor.running_keys() == set()
    assert executor.free_slots() >= 1


def test_success_writes_event_file_and_log_header_footer(executor: Executor, make_workload: MakeWorkload) -> None:
    workload = make_workload("ok", value=1)

    _, terminal = run_one(executor, workload)

    assert Path(event_path(workload.log_path)).exists()
    assert read_event_file(workload.log_path) == terminal
    lines = Path(workload.log_path).read_text().splitlines()
    assert lines[0].startswith(f"[headwater] try 1 of {workload.key} started ")
    assert lines[-1].startswith("[headwater] try 1 ended ") and lines[-1].endswith(": success")


def test_exception_becomes_failed_event_with_reason_and_traceback(
    executor: Executor, make_workload: MakeWorkload
) -> None:
    workload = make_workload("fail")

    _, terminal = run_one(executor, workload)

    assert terminal.state == "failed"
    assert terminal.reason == "ValueError: bad row 3"
    log = Path(workload.log_path).read_text()
    assert "Traceback (most recent call last)" in log and 'raise ValueError("bad row 3")' in log
    assert log.splitlines()[-1].endswith(": failed (ValueError: bad row 3)")
    assert read_event_file(workload.log_path) == terminal
    # The executor survives and runs the next try.
    _, after = run_one(executor, make_workload("ok", "next"))
    assert after.state == "success"


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("sys_exit", "SystemExit: 4"),
        ("bad_return", "ExecutorError: the runner returned int, not a TaskEvent"),
        ("not_json", "ExecutorError: the runner returned an event that is not JSON-serialisable"),
    ],
)
def test_runner_misbehaviour_becomes_failed_event(
    executor: Executor, make_workload: MakeWorkload, action: str, reason: str
) -> None:
    _, terminal = run_one(executor, make_workload(action))

    assert terminal.state == "failed"
    assert terminal.reason.startswith(reason)


def test_timeout_fails_the_try_with_reason(executor: Executor, make_workload: MakeWorkload) -> None:
    workload = make_workload("sleep", seconds=20, timeout=0.3)

    _, terminal = run_one(executor, workload)

    assert terminal.state == "failed"
    assert terminal.reason == "timed out after 0.3s (execution_timeout)"
    assert read_event_file(workload.log_path) == terminal
    assert (
        Path(workload.log_path)
        .read_text()
        .splitlines()[-1]
        .endswith(": failed (timed out after 0.3s (execution_timeout))")
    )
    _, after = run_one(executor, make_workload("ok", "next"))
    assert after.state == "success"


def test_task_output_and_child_output_land_in_the_try_log(executor: Executor, make_workload: MakeWorkload) -> None:
    workload = make_workload("output")

    _, terminal = run_one(executor, workload)

    assert terminal.state == "success"
    log = Path(workload.log_path).read_text()
    for line in (
        "line from print",
        "line from print to stderr",
        "line from os.write fd 1",
        "line from os.write fd 2",
        "line from a child process",
    ):
        assert line in log


def test_each_try_appends_to_its_own_log(executor: Executor, make_workload: MakeWorkload) -> None:
    first = make_workload("output", try_number=1)
    second = make_workload("fail", try_number=2)

    run_one(executor, first)
    run_one(executor, second)

    assert "line from print" in Path(first.log_path).read_text()
    second_log = Path(second.log_path).read_text()
    assert "line from print" not in second_log and "bad row 3" in second_log


def test_unknown_runner_fails_each_try_with_import_error(tmp_path: Path, make_workload: MakeWorkload) -> None:
    workload = make_workload("ok")
    with InlineExecutor("no_such_module_hw:run") as ex:
        _, terminal = run_one(ex, workload)

    assert terminal.state == "failed"
    assert terminal.reason == "ModuleNotFoundError: No module named 'no_such_module_hw'"


def test_submit_twice_and_submit_without_slot_are_refused(executor: Executor, make_workload: MakeWorkload) -> None:
    from headwater.errors import ExecutorError

    workload = make_workload("ok")
    while executor.free_slots():
        executor.submit(make_workload("ok", f"fill{executor.free_slots()}"))
    with pytest.raises(ExecutorError, match="no free"):
        executor.submit(workload)


def test_shutdown_reports_unfinished_work_and_stays_readable(
    executor: Executor, make_workload: MakeWorkload, tmp_path: Path
) -> None:
    workload = make_workload("wait_for_file", release=str(tmp_path / "never"))
    executor.submit(workload)
    if isinstance(executor, InlineExecutor):
        assert executor.running_keys() == {workload.key}  # queued, not started

    executor.shutdown()

    events = executor.events(0)
    terminal = [e for e in events if e.state != "running"]
    assert [(e.key, e.state, e.reason) for e in terminal] == [(workload.key, "failed", "executor shut down")]
    assert read_event_file(workload.log_path) == terminal[0]
    assert executor.running_keys() == set()
    assert executor.free_slots() == 0


def test_inline_timeout_keeps_an_outer_alarm(make_workload: MakeWorkload) -> None:
    fired: list[int] = []

    def outer(signum: int, frame: FrameType | None) -> None:
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, outer)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        with InlineExecutor(RUNNER) as ex:
            _, terminal = run_one(ex, make_workload("sleep", seconds=5, timeout=0.2))
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert signal.getsignal(signal.SIGALRM) is outer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert terminal.reason == "timed out after 0.2s (execution_timeout)"
    assert 50 < left < 60
    assert fired == []


def test_inline_timeout_caught_by_the_runner_still_reads_as_timeout(make_workload: MakeWorkload) -> None:
    with InlineExecutor(RUNNER) as ex:
        _, terminal = run_one(ex, make_workload("catch_all", seconds=5, timeout=0.2))

    assert terminal.state == "failed"
    assert terminal.reason == "timed out after 0.2s (execution_timeout)"


def test_inline_runs_in_this_process(make_workload: MakeWorkload) -> None:
    with InlineExecutor(RUNNER) as ex:
        events, terminal = run_one(ex, make_workload("ok"))

    assert {e.pid for e in events} == {os.getpid()}
    assert terminal.state == "success"


def test_inline_echo_copies_output_to_stdout(make_workload: MakeWorkload, capfd: pytest.CaptureFixture[str]) -> None:
    workload = make_workload("output")
    with InlineExecutor(RUNNER, echo=True) as ex:
        _, terminal = run_one(ex, workload)

    out, _ = capfd.readouterr()
    assert terminal.state == "success"
    assert "line from os.write fd 1" in out and "line from a child process" in out
    assert "line from os.write fd 1" in Path(workload.log_path).read_text()


def test_inline_lets_keyboard_interrupt_through_and_restores_output(
    make_workload: MakeWorkload, capfd: pytest.CaptureFixture[str]
) -> None:
    workload = make_workload("interrupt")
    with InlineExecutor(RUNNER) as ex:
        ex.submit(workload)
        with pytest.raises(KeyboardInterrupt):
            ex.events()

    os.write(1, b"after the interrupt\n")
    assert "after the interrupt" in capfd.readouterr().out
    assert "after the interrupt" not in Path(workload.log_path).read_text()


def test_unwritable_log_fails_the_try_and_the_executor_lives_on(
    executor: Executor, make_workload: MakeWorkload, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    workload = replace(make_workload("ok"), log_path=str(blocker / "try=1.log"))

    _, terminal = run_one(executor, workload)

    assert terminal.state == "failed"
    assert terminal.reason.startswith("could not run the try: FileExistsError")
    _, after = run_one(executor, make_workload("ok", "next"))
    assert after.state == "success"
