"""Running one try, and the long-lived worker process of a :class:`LocalExecutor`.

:func:`run_try` is shared by both executors: it sends the try's output (fd 1 and
fd 2, so child processes are included) to the try's log file, calls the runner,
turns anything the runner raises into a failed event, and writes the event file.

Started as ``python -m headwater.executor.worker RUNNER --fd N --parent-pid P``,
the module is a worker: it reads ``run`` frames from the control socket ``N`` and
answers each with a ``running`` event and then the terminal event. It imports
only the standard library and the executor port; the runner's module is imported
when the worker starts, so the first try does not pay for it.

A worker must not outlive the executor's process (``P``) while running user code:

- ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes the kernel kill the worker itself;
- a guard process, forked at start, waits on ``P``'s pidfd and kills the
  worker's whole process group, so the children of a task die too (the worker
  cannot do it: PDEATHSIG has already killed it);
- a watchdog thread notices ``os.getppid()`` change, for systems without the above.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import faulthandler
import functools
import importlib
import io
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TextIO

from headwater.errors import ExecutorError
from headwater.executor.base import TaskEvent, Workload
from headwater.executor.events import event_path, write_event_file
from headwater.executor.protocol import EVENT, HELLO, RUN, recv_frame, send_frame

DEFAULT_RUNNER = "headwater.orchestration.runtime:execute_workload"
"""The production runner: imports the DAG file and runs the operator."""

Runner = Callable[[Workload], TaskEvent]
Call = Callable[[Runner, Workload], TaskEvent]

TERMINAL_STATES = frozenset({"success", "failed", "skipped", "up_for_reschedule"})
_REASON_LIMIT = 500
_LOG_PREFIX = "[headwater]"


# --- reasons and log lines ------------------------------------------------------------


def timeout_reason(seconds: float) -> str:
    """The reason of a try stopped by its ``execution_timeout``."""
    return f"timed out after {seconds:g}s (execution_timeout)"


def exit_reason(returncode: int) -> str:
    """The reason of a try whose worker process ended with ``returncode`` (``Popen`` style)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker process died: signal {name} ({returncode})"
    return f"worker process exited with code {returncode}"


def exception_reason(exc: BaseException) -> str:
    """One readable line for an exception: ``"ValueError: bad row 3"``."""
    name = type(exc).__name__
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    reason = f"{name}: {line}" if line else name
    return reason[:_REASON_LIMIT]


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="milliseconds")


def open_log(log_path: str) -> int:
    """Open (create) a try's log for appending; returns the fd."""
    folder = os.path.dirname(log_path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


def write_log_line(log_fd: int, text: str) -> None:
    """Append one headwater line (header, footer) to a try's log."""
    os.write(log_fd, f"{_LOG_PREFIX} {text}\n".encode("utf-8", "backslashreplace"))


def footer_line(event: TaskEvent, end: float) -> str:
    """The last line of a try's log."""
    outcome = f"{event.state} ({event.reason})" if event.reason else event.state
    return f"try {event.key.try_number} ended {_iso(end)}: {outcome}"


def append_footer(log_path: str, event: TaskEvent) -> None:
    """Close a try's log on behalf of a worker that cannot (it died or was killed)."""
    fd = open_log(log_path)
    try:
        write_log_line(fd, footer_line(event, event.end or time.time()))
    finally:
        os.close(fd)


# --- output redirection -----------------------------------------------------------------

_fd_writers: dict[int, TextIO] = {}


def _fd_writer(fd: int) -> TextIO:
    # One unclosed write-through writer per fd for the life of the process: a logging
    # handler created during a try keeps a reference to it, and it keeps writing to
    # whatever the fd points to (the current try's log).
    writer = _fd_writers.get(fd)
    if writer is None:
        raw = io.FileIO(fd, "w", closefd=False)
        writer = io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=True)
        _fd_writers[fd] = writer
    return writer


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


def _copy_output(read_fd: int, log_fd: int, echo_fd: int) -> None:
    try:
        while chunk := os.read(read_fd, 65536):
            os.write(log_fd, chunk)
            with contextlib.suppress(OSError):
                os.write(echo_fd, chunk)
    finally:
        for fd in (read_fd, log_fd, echo_fd):
            os.close(fd)


@contextlib.contextmanager
def redirect_output(log_fd: int, *, echo: bool = False) -> Iterator[None]:
    """Point fd 1 and fd 2 (and ``sys.stdout``/``sys.stderr``) at ``log_fd`` for the block.

    With ``echo`` the output is also copied to where fd 1 pointed before, through
    a pipe and a thread, so a person running ``dags test`` sees it.
    """
    _flush_std()
    saved = [os.dup(fd) for fd in (1, 2)]
    old_streams = sys.stdout, sys.stderr
    copier: threading.Thread | None = None
    target = log_fd
    write_end = -1
    if echo:
        read_end, write_end = os.pipe()
        copier = threading.Thread(
            target=_copy_output,
            args=(read_end, os.dup(log_fd), os.dup(saved[0])),
            name="headwater-echo",
            daemon=True,
        )
        copier.start()
        target = write_end
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        if echo:
            os.close(write_end)
        sys.stdout, sys.stderr = _fd_writer(1), _fd_writer(2)
        yield
    finally:
        _flush_std()
        sys.stdout, sys.stderr = old_streams
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
        if copier is not None:
            # A child process the task left behind may hold the pipe open; do not
            # wait for it beyond a moment.
            copier.join(timeout=1.0)


# --- one try ----------------------------------------------------------------------------


def load_runner(path: str) -> Runner:
    """Import the runner named ``"package.module:function"``."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ExecutorError(
            f"runner {path!r} is not a dotted path of the form 'package.module:function'",
            hint=f"use for example {DEFAULT_RUNNER!r}",
        )
    target: object = importlib.import_module(module_name)
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ExecutorError(
                f"runner {path!r}: module {module_name!r} has no attribute {attr!r}",
                hint="check the spelling of the function after the ':'",
            ) from None
    if not callable(target):
        raise ExecutorError(f"runner {path!r} is not callable")
    return target


def plain_call(runner: Runner, workload: Workload) -> TaskEvent:
    """Call the runner with nothing around it."""
    return runner(workload)


def failed_event(
    workload: Workload,
    reason: str,
    *,
    start: float | None = None,
    end: float | None = None,
    pid: int | None = None,
    hostname: str | None = None,
) -> TaskEvent:
    """A failed terminal event for ``workload``."""
    return TaskEvent(key=workload.key, state="failed", reason=reason, start=start, end=end, pid=pid, hostname=hostname)


def unrunnable_event(workload: Workload, exc: Exception) -> TaskEvent:
    """The failed event of a try that could not be run at all (its log cannot be written)."""
    return failed_event(
        workload,
        f"could not run the try: {exception_reason(exc)}",
        end=time.time(),
        pid=os.getpid(),
        hostname=hostname(),
    )


def _checked(event: object, workload: Workload) -> TaskEvent:
    if not isinstance(event, TaskEvent):
        raise ExecutorError(f"the runner returned {type(event).__name__}, not a TaskEvent")
    if event.key != workload.key:
        raise ExecutorError(f"the runner returned an event for {event.key}, not for {workload.key}")
    if event.state not in TERMINAL_STATES:
        raise ExecutorError(f"the runner returned state {event.state!r}, not a terminal state")
    try:
        event.to_json()
    except (TypeError, ValueError) as exc:
        raise ExecutorError(f"the runner returned an event that is not JSON-serialisable: {exc}") from exc
    return event


def run_try(
    workload: Workload,
    runner_path: str,
    *,
    call: Call = plain_call,
    echo: bool = False,
    propagate_interrupt: bool = False,
    cleanup: Callable[[], list[int]] | None = None,
) -> TaskEvent:
    """Run one try of ``workload`` in this process and return its terminal event.

    Steps:

    1. Open the try's log (append; parent folders created) and write a header.
    2. With fd 1 and 2 sent to the log, load the runner and ``call`` it. Whatever
       escapes (an exception, ``SystemExit``, a bad return value) becomes a failed
       event, with the traceback in the log. ``KeyboardInterrupt`` propagates
       when ``propagate_interrupt`` is set.
    3. Call ``cleanup`` (the worker kills processes the try left running); log
       the pids it returns.
    4. Fill in the event's start, end, pid and hostname where the runner did not.
    5. Write the footer, then the event file (atomically).
    """
    key = workload.key
    pid = os.getpid()
    host = hostname()
    start = time.time()
    # Step 1.
    log_fd = open_log(workload.log_path)
    try:
        write_log_line(log_fd, f"try {key.try_number} of {key} started {_iso(start)} on {host} pid {pid}")
        # Step 2.
        with redirect_output(log_fd, echo=echo):
            try:
                event = _checked(call(load_runner(runner_path), workload), workload)
            except KeyboardInterrupt:
                if propagate_interrupt:
                    raise
                traceback.print_exc()
                event = failed_event(workload, "KeyboardInterrupt")
            except BaseException as exc:
                traceback.print_exc()
                event = failed_event(workload, exception_reason(exc))
        # Step 3.
        if cleanup is not None:
            leftovers = cleanup()
            if leftovers:
                pids = " ".join(map(str, leftovers))
                write_log_line(log_fd, f"killed {len(leftovers)} process(es) the try left running: {pids}")
        # Step 4.
        end = time.time()
        event = replace(
            event,
            start=event.start if event.start is not None else start,
            end=event.end if event.end is not None else end,
            pid=event.pid if event.pid is not None else pid,
            hostname=event.hostname if event.hostname is not None else host,
        )
        # Step 5.
        write_log_line(log_fd, footer_line(event, end))
    finally:
        os.close(log_fd)
    write_event_file(event_path(workload.log_path), event)
    return event


@functools.cache
def hostname() -> str:
    """This machine's host name, looked up once."""
    return socket.gethostname()


# --- the worker process -----------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _set_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # only here: ctypes costs import time and is Linux-only use

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _kill_own_group() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _start_guard(parent: int, control_fd: int) -> int | None:
    """Fork the guard process that kills this process group when ``parent`` exits; its pid."""
    try:
        parent_fd = os.pidfd_open(parent)
        self_fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return None
    if os.getppid() != parent:  # the executor died before the pidfd was opened
        _kill_own_group()
    child = os.fork()
    if child:
        os.close(parent_fd)
        os.close(self_fd)
        return child
    # The guard: single-threaded, blocked in poll(), so it acts even while the
    # worker's user code holds the GIL.
    code = 0
    try:
        os.close(control_fd)
        poller = select.poll()
        poller.register(parent_fd, select.POLLIN)
        poller.register(self_fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll()}
        # When the executor dies, PDEATHSIG may kill the worker before the
        # executor's pidfd reports: give that notice a moment.
        if parent_fd in ready or select.select([parent_fd], [], [], 0.2)[0]:
            _kill_own_group()
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, from ``/proc/PID/task/TID/children`` (Linux); [] elsewhere."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                found += [int(c) for c in fh.read().split()]
    return found


def kill_leftovers(keep: int | None = None) -> list[int]:
    """Kill the processes a try left running: this process's descendants, except ``keep``.

    A background process started by a task would otherwise live as long as the
    worker and keep writing into a finished try's log. Direct children are reaped.
    """
    direct = [pid for pid in _children(os.getpid()) if pid != keep]
    doomed: list[int] = []
    stack = list(direct)
    while stack:
        pid = stack.pop()
        doomed.append(pid)
        stack += _children(pid)
    for pid in doomed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in direct:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return doomed


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            _kill_own_group()


def _control_socket(fd: int) -> socket.socket:
    if fd <= 2:
        # fd 1 and 2 are redirected during tries: keep the channel out of their way.
        import fcntl

        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, fd)
        os.close(null)
        fd = moved
    os.set_inheritable(fd, False)
    return socket.socket(fileno=fd)


def _restore_process(cwd: str, environ: dict[str, str]) -> None:
    # The worker is reused: one task's chdir or environment changes must not leak
    # into the next one.
    with contextlib.suppress(OSError):
        if os.getcwd() != cwd:
            os.chdir(cwd)
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)


def serve(sock: socket.socket, runner_path: str, guard: int | None = None) -> int:
    """Say hello, then answer ``run`` frames on ``sock`` until the executor closes it.

    After each try, processes the try left running are killed (``guard``, the
    guard process, is spared).
    """
    cwd = os.getcwd()
    environ = dict(os.environ)
    pid = os.getpid()
    send_frame(sock, HELLO, f'{{"pid": {pid}}}')
    while True:
        frame = recv_frame(sock)
        if frame is None:
            return 0
        kind, body = frame
        if kind != RUN:
            raise ExecutorError(f"worker received an unknown message kind {kind!r}")
        workload = Workload.from_json(body)
        running = TaskEvent(workload.key, "running", start=time.time(), pid=pid, hostname=hostname())
        send_frame(sock, EVENT, running.to_json())
        try:
            event = run_try(workload, runner_path, cleanup=functools.partial(kill_leftovers, guard))
        except Exception as exc:  # the log or event file cannot be written: report, live on
            event = unrunnable_event(workload, exc)
        send_frame(sock, EVENT, event.to_json())
        _restore_process(cwd, environ)


def _parse_args(argv: list[str]) -> tuple[str, int, int]:
    usage = "usage: python -m headwater.executor.worker RUNNER --fd N --parent-pid PID"
    if len(argv) != 5 or argv[1] != "--fd" or argv[3] != "--parent-pid":
        raise SystemExit(usage)
    return argv[0], int(argv[2]), int(argv[4])


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process."""
    runner_path, control_fd, parent = _parse_args(sys.argv[1:] if argv is None else argv)
    # Step 1. Never outlive the executor.
    _set_death_signal()
    if os.getppid() != parent:
        return 1
    sock = _control_socket(control_fd)
    guard = _start_guard(parent, sock.fileno())
    threading.Thread(target=_watch_parent, args=(parent,), name="headwater-watchdog", daemon=True).start()
    # Step 2. Crash and timeout diagnostics go to fd 2, which is the try's log while
    # a try runs: a segfault's traceback, and the stack dump the executor asks for
    # with SIGUSR1 before it kills a try that timed out.
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    # Step 3. Import the runner now, while idle. A failure is reported by the first
    # try, with its traceback in that try's log.
    with contextlib.suppress(Exception):
        load_runner(runner_path)
    try:
        return serve(sock, runner_path, guard)
    except (BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
