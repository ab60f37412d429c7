"""The Dask side of a :class:`~headwater.executor.dask.DaskExecutor`: one try per Dask task.

:func:`run_workload` is what the executor submits. It runs on a Dask worker
thread, but never runs user code there: it starts ``python -m
headwater.executor.worker RUNNER`` as a child process in its own session (a
process group holding everything the task starts), sends it the workload, and
waits. The child is the LocalExecutor's worker unchanged, so the try's log, its
event file, the leftover-process cleanup and the death guard (the group dies
with the Dask worker process) all work the same way.

Steps of one try:

1. Refuse a try the executor killed before it started (the kill can reach this
   worker before the try does): report it failed without starting anything.
2. Start the child, its output going to the try's log, and send it the workload.
3. Relay its ``running`` event to the executor as a Dask structured event on the
   executor's topic (with this worker's address, which :func:`kill_tries` needs).
4. Wait for its terminal event, its end, the try's deadline or a kill. A deadline
   first asks the child for a stack dump (SIGUSR1, into the log), then kills.
5. Kill the child's process group (the guard and anything the task left) and reap it.
6. For an end the child could not report (crash, timeout, kill), append the log
   footer and write the failed event file, as the LocalExecutor does.
7. Return the terminal event as JSON.

Imports only the standard library and the executor's own modules: a Dask worker
imports this module to unpickle the function, and needs ``distributed`` only for
relaying the ``running`` event.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from headwater.errors import ExecutorError
from headwater.executor.base import TaskEvent, Workload
from headwater.executor.events import event_path, write_event_file
from headwater.executor.local import DUMP_GRACE
from headwater.executor.protocol import EVENT, HELLO, RUN, FrameReader, send_frame
from headwater.executor.worker import (
    append_footer,
    exception_reason,
    exit_reason,
    failed_event,
    hostname,
    open_log,
    timeout_reason,
)

# Kills of tries not started on this worker yet, oldest first. A kill is sent to
# every worker when the executor does not know where the try runs, so most marks
# are never claimed: keep only the newest.
_MAX_MARKS = 10_000
_RECV_SIZE = 1 << 18


@dataclass
class _Try:
    pid: int | None = None  # the child's pid (and process group id) until it is reaped
    kill_reason: str | None = None


_lock = threading.Lock()
_tries: dict[str, _Try] = {}
_marks: OrderedDict[str, str] = OrderedDict()


def run_workload(
    dask_key: str,
    workload_json: str,
    runner: str,
    topic: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> str:
    """Run one try in a child process on this Dask worker; the terminal event as JSON.

    ``dask_key`` names the try to :func:`kill_tries`; ``topic`` is the executor's
    Dask event topic for the ``running`` event (``None``: not on a Dask worker, do
    not relay). ``env`` is added to the child's environment, ``cwd`` is its
    working directory.
    """
    workload = Workload.from_json(workload_json)
    # Step 1.
    with _lock:
        refused = _marks.pop(dask_key, None)
        if refused is None:
            state = _tries[dask_key] = _Try()
    if refused is not None:
        return _report_failed(workload, refused, None, None).to_json()
    try:
        return _run_child(dask_key, workload, runner, topic, state, env, cwd).to_json()
    finally:
        with _lock:
            _tries.pop(dask_key, None)


def kill_tries(keys: list[str], reason: str) -> list[str]:
    """Kill the tries ``keys`` running on this worker; mark the others as killed.

    Called by the executor through ``Client.run`` (on the worker's event loop, so
    it only sends signals). Returns the keys that were running here.
    """
    found: list[str] = []
    with _lock:
        for key in keys:
            state = _tries.get(key)
            if state is None:
                _marks[key] = reason
                _marks.move_to_end(key)
                while len(_marks) > _MAX_MARKS:
                    _marks.popitem(last=False)
                continue
            found.append(key)
            if state.kill_reason is None:
                state.kill_reason = reason
            if state.pid is not None:
                _kill_group(state.pid)
    return found


def _run_child(
    dask_key: str,
    workload: Workload,
    runner: str,
    topic: str | None,
    state: _Try,
    env: dict[str, str] | None,
    cwd: str | None,
) -> TaskEvent:
    # Step 2.
    ours, theirs = socket.socketpair()
    try:
        proc = _start_child(workload, runner, theirs, env, cwd)
    except OSError as exc:
        ours.close()
        return _report_failed(
            workload, f"could not start a worker process ({sys.executable}): {exception_reason(exc)}", None, None
        )
    finally:
        theirs.close()
    with _lock:
        state.pid = proc.pid
        if state.kill_reason is not None:  # killed while the child was starting
            _kill_group(proc.pid)
    with ours:
        with contextlib.suppress(OSError):  # it died already: its end of file below says how
            send_frame(ours, RUN, workload.to_json())
        # Steps 3 and 4.
        event, running, reason = _wait(dask_key, workload, proc, ours, topic, state)
    # Step 5. Forget the pid first, so a late kill cannot signal a reused one.
    with _lock:
        state.pid = None
    _kill_group(proc.pid)
    returncode = _reap(proc)
    if event is not None:
        return event
    # Step 6.
    start = running.start if running is not None else None
    return _report_failed(workload, reason or state.kill_reason or exit_reason(returncode), start, proc.pid)


def _start_child(
    workload: Workload, runner: str, theirs: socket.socket, env: dict[str, str] | None, cwd: str | None
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "headwater.executor.worker",
        runner,
        "--fd",
        str(theirs.fileno()),
        "--parent-pid",
        str(os.getpid()),
    ]
    # What the child prints outside its try (an import error of the worker
    # itself, a crash report) goes to the try's log: nobody reads a remote Dask
    # worker's stderr. An unwritable log is reported by the child's try.
    try:
        log_fd: int | None = open_log(workload.log_path)
    except OSError:
        log_fd = None
    try:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
            env={**os.environ, **env} if env else None,
            cwd=cwd,
        )
    finally:
        if log_fd is not None:
            os.close(log_fd)


def _wait(
    dask_key: str,
    workload: Workload,
    proc: subprocess.Popen[bytes],
    sock: socket.socket,
    topic: str | None,
    state: _Try,
) -> tuple[TaskEvent | None, TaskEvent | None, str | None]:
    """Read the child's frames until its terminal event, its end or the deadline.

    Returns the terminal event (``None`` if the child did not send one), the
    running event, and the reason to give when the try ended some other way
    (``None``: the child's exit status or a kill says why).
    """
    timeout = workload.timeout
    deadline = time.monotonic() + timeout if timeout else None
    reader = FrameReader()
    buf = bytearray(_RECV_SIZE)
    running: TaskEvent | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not selector.select(wait):
                assert timeout is not None
                _dump_stack(proc.pid)
                with _lock:
                    if state.kill_reason is None:
                        state.kill_reason = timeout_reason(timeout)
                return None, running, None
            try:
                count = sock.recv_into(buf)
            except OSError:
                count = 0
            if count == 0:
                return None, running, None
            try:
                for kind, body in reader.feed(memoryview(buf)[:count]):
                    if kind == HELLO:
                        continue
                    if kind != EVENT:
                        raise ExecutorError(f"unexpected message kind {kind!r}")
                    event = TaskEvent.from_json(body)
                    if event.key != workload.key:
                        raise ExecutorError(f"the worker reported {event.key}, which it was not running")
                    if event.state != "running":
                        return event, running, None
                    running = event
                    if timeout:
                        deadline = time.monotonic() + timeout
                    _relay(topic, dask_key, body)
            except (ExecutorError, ValueError, TypeError, KeyError) as exc:
                return None, running, f"worker protocol error: {exc}"


def _relay(topic: str | None, dask_key: str, running_json: str) -> None:
    """Send the running event to the executor (step 3)."""
    if topic is None:
        return
    from distributed import get_worker  # only on a Dask worker, which has it

    worker = get_worker()
    worker.log_event(topic, {"key": dask_key, "event": running_json, "worker": worker.address})


def _dump_stack(pid: int) -> None:
    # The worker's faulthandler writes every thread's stack to fd 2, the try's
    # log, so a person sees where the task was stuck.
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGUSR1)
        time.sleep(DUMP_GRACE)


def _kill_group(pid: int) -> None:
    # The child leads its own session: its pid is its group id, and is not reused
    # before the child is reaped, which only happens after its pid is forgotten.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:  # stuck in the kernel: Popen reaps it later
        return -signal.SIGKILL


def _report_failed(workload: Workload, reason: str, start: float | None, pid: int | None) -> TaskEvent:
    """Close the log and write the event file of a try the child did not end (step 6)."""
    event = failed_event(workload, reason, start=start, end=time.time(), pid=pid, hostname=hostname())
    with contextlib.suppress(OSError):
        append_footer(workload.log_path, event)
        write_event_file(event_path(workload.log_path), event)
    return event
