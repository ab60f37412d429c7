"""Runners for the executor tests: ``run`` dispatches on ``workload.params["action"]``.

Each action stands for something a real task may do: succeed, raise, hang,
crash the interpreter, write to fd 1, start child processes, return a big value.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from headwater.executor.base import TaskEvent, Workload


def _ok(w: Workload, **xcom: object) -> TaskEvent:
    return TaskEvent(w.key, "success", xcom={k: {"json": v} for k, v in xcom.items()})


def ok(w: Workload) -> TaskEvent:
    return _ok(w, return_value=w.params.get("value"))


def sleep(w: Workload) -> TaskEvent:
    time.sleep(float(w.params["seconds"]))
    return _ok(w)


def wait_for_file(w: Workload) -> TaskEvent:
    """Block until the file ``params["release"]`` exists: a task the test ends when it wants."""
    release = Path(w.params["release"])
    deadline = time.monotonic() + 20
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return _ok(w, pid=os.getpid())


def fail(w: Workload) -> TaskEvent:
    raise ValueError("bad row 3")


def sys_exit(w: Workload) -> TaskEvent:
    sys.exit(4)


def exit3(w: Workload) -> TaskEvent:
    os._exit(3)


def segfault(w: Workload) -> TaskEvent:
    ctypes.string_at(0)
    return _ok(w)


def bad_return(w: Workload) -> TaskEvent:
    return 42  # type: ignore[return-value]


def not_json(w: Workload) -> TaskEvent:
    return TaskEvent(w.key, "success", xcom={"return_value": {"json": object()}})


def output(w: Workload) -> TaskEvent:
    print("line from print")
    print("line from print to stderr", file=sys.stderr)
    os.write(1, b"line from os.write fd 1\n")
    os.write(2, b"line from os.write fd 2\n")
    subprocess.run(["sh", "-c", "echo line from a child process"], check=True)
    return _ok(w)


def spawn_sleep(w: Workload) -> TaskEvent:
    """Start ``sleep`` in the background, record its pid, then hang."""
    child = subprocess.Popen(["sleep", str(w.params["sleep_arg"])])
    Path(w.params["pid_file"]).write_text(str(child.pid))
    time.sleep(30)
    return _ok(w)


def leave_child(w: Workload) -> TaskEvent:
    """Start ``sleep`` (itself starting a grandchild) in the background and return at once."""
    pid_file = Path(w.params["pid_file"])
    child = subprocess.Popen(["sh", "-c", f"sleep {w.params['sleep_arg']} & echo $! > {pid_file}; wait"])
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().endswith("\n")) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _ok(w, child=child.pid)


def big(w: Workload) -> TaskEvent:
    return _ok(w, return_value="x" * int(w.params["size"]))


def catch_all(w: Workload) -> TaskEvent:
    """Sleep, and report any exception as a failure the way a real runner does."""
    try:
        time.sleep(float(w.params["seconds"]))
    except Exception as exc:
        return TaskEvent(w.key, "failed", reason=f"runner caught {type(exc).__name__}")
    return _ok(w)


def mess_up_process(w: Workload) -> TaskEvent:
    os.chdir("/")
    os.environ["HEADWATER_TEST_LEAK"] = "leaked"
    return _ok(w)


def interrupt(w: Workload) -> TaskEvent:
    raise KeyboardInterrupt


def report_process(w: Workload) -> TaskEvent:
    return _ok(w, cwd=os.getcwd(), leak=os.environ.get("HEADWATER_TEST_LEAK"), pid=os.getpid())


ACTIONS: dict[str, Callable[[Workload], TaskEvent]] = {
    f.__name__: f
    for f in (
        ok,
        sleep,
        wait_for_file,
        fail,
        sys_exit,
        exit3,
        segfault,
        bad_return,
        not_json,
        output,
        spawn_sleep,
        leave_child,
        big,
        catch_all,
        mess_up_process,
        interrupt,
        report_process,
    )
}


def run(w: Workload) -> TaskEvent:
    """The runner the tests give executors."""
    return ACTIONS[w.params.get("action", "ok")](w)
