"""LocalExecutor: a pool of long-lived worker processes on this machine.

Each worker is ``python -m headwater.executor.worker RUNNER`` in its own session
(so it leads a process group holding everything its tasks start) and talks to
the executor over a dedicated socket pair with length-prefixed frames
(:mod:`headwater.executor.protocol`). The executor never sleeps to poll: it
blocks on the workers' sockets, with a timeout no later than the next try
deadline.

Ending a try the worker cannot end itself (crash, timeout, kill, shutdown):

1. Kill the worker's whole process group with SIGKILL (a task's ``bash``
   children die with it) and reap the worker.
2. Append the footer to the try's log and write the failed event file, as the
   worker would have.
3. Queue the failed event for :meth:`LocalExecutor.events`.
4. Start a replacement worker, so the pool keeps its size.

Not thread-safe: drive one executor from one long-lived thread. On Linux a
worker is killed when the *thread* that started it exits (``PR_SET_PDEATHSIG``
is per thread), and replacements are started from :meth:`LocalExecutor.events`.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

from headwater.errors import ExecutorError
from headwater.executor.base import TaskEvent, TaskKey, Workload
from headwater.executor.events import event_path, write_event_file
from headwater.executor.protocol import EVENT, HELLO, RUN, FrameReader, send_frame
from headwater.executor.worker import (
    DEFAULT_RUNNER,
    TERMINAL_STATES,
    append_footer,
    exit_reason,
    hostname,
    timeout_reason,
)

SHUTDOWN_REASON = "executor shut down"
# Between asking a timed-out worker for a stack dump (SIGUSR1, written to the
# try's log by faulthandler) and killing its group.
DUMP_GRACE = 0.2
# Workers that die before saying hello, this many times in a row, mean the
# worker command itself is broken: stop starting new ones.
MAX_STARTUP_FAILURES = 3
_RECV_SIZE = 1 << 18


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    reader: FrameReader = field(default_factory=FrameReader)
    workload: Workload | None = None
    deadline: float | None = None  # monotonic time the try's execution_timeout expires
    kill_at: float | None = None  # monotonic time to kill the group; set once the end is decided
    kill_reason: str = ""
    started: float | None = None  # wall-clock start of the current try
    spoke: bool = False  # said hello: the worker command works

    @property
    def pid(self) -> int:
        return self.proc.pid


class LocalExecutor:
    """Runs workloads in ``parallelism`` long-lived worker processes.

    ``runner`` is the dotted path ``"package.module:function"`` the workers call.
    ``env`` holds variables added to (or overriding) this process's environment
    for the workers; ``cwd`` is their working directory.
    """

    def __init__(
        self,
        parallelism: int | None = None,
        runner: str = DEFAULT_RUNNER,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.parallelism = max(1, parallelism if parallelism is not None else (os.cpu_count() or 1))
        self.runner = runner
        self._env = dict(env) if env else None
        self._cwd = cwd
        self._selector: selectors.BaseSelector | None = None
        self._workers: set[_Worker] = set()
        self._idle: deque[_Worker] = deque()
        self._busy: dict[TaskKey, _Worker] = {}
        self._events: list[TaskEvent] = []
        self._buf = bytearray(_RECV_SIZE)
        self._startup_failures = 0
        self._broken: str | None = None
        self._closed = False

    # --- Executor protocol ---------------------------------------------------------------

    def start(self) -> None:
        """Start the worker processes (all at once; they boot in parallel). Idempotent."""
        if self._closed:
            raise ExecutorError("the executor was shut down", hint="create a new LocalExecutor")
        if self._selector is not None:
            return
        self._selector = selectors.DefaultSelector()
        for _ in range(self.parallelism):
            self._spawn()

    def submit(self, workload: Workload) -> None:
        """Hand ``workload`` to an idle worker. Raises :class:`ExecutorError` when none is free."""
        self.start()
        key = workload.key
        if key in self.running_keys():
            raise ExecutorError(f"{key} is already running", hint="submit each try once")
        if self._broken is not None:
            raise ExecutorError(f"cannot run {key}: {self._broken}")
        if not self._idle:
            raise ExecutorError(
                f"no free worker for {key}: all {self.parallelism} are busy",
                hint="submit only as many workloads as free_slots() returns",
            )
        worker = self._idle.popleft()
        worker.workload = workload
        worker.started = None
        worker.deadline = time.monotonic() + workload.timeout if workload.timeout else None
        self._busy[key] = worker
        with contextlib.suppress(OSError):
            # A worker that died while idle cannot take it; its end of file, seen
            # by events(), reports this try as failed with the exit reason.
            send_frame(worker.sock, RUN, workload.to_json())

    def events(self, timeout: float | None = 0.0) -> list[TaskEvent]:
        """Return the events produced since the last call (see :class:`Executor`)."""
        if self._selector is None or self._closed:
            return self._take()
        end = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            idle = timeout is None and not self._busy
            self._read(0.0 if self._events or idle else self._wait_time(end))
            self._expire(time.monotonic())
            if self._events:
                return self._take()
            if timeout is None and not self._busy:
                return []
            if end is not None and time.monotonic() >= end:
                return []

    def free_slots(self) -> int:
        """Idle workers (all of them before :meth:`start`)."""
        if self._closed or self._broken is not None:
            return 0
        if self._selector is None:
            return self.parallelism
        return len(self._idle)

    def running_keys(self) -> set[TaskKey]:
        """Keys submitted whose terminal event :meth:`events` has not returned yet."""
        keys = set(self._busy)
        keys.update(e.key for e in self._events if e.state in TERMINAL_STATES)
        return keys

    def kill(self, key: TaskKey, reason: str = "killed") -> None:
        """Kill the worker running ``key`` (and its process group); a failed event follows."""
        worker = self._busy.get(key)
        if worker is not None:
            self._end(worker, reason)

    def shutdown(self) -> None:
        """Kill every worker group; running tries are reported failed. Idempotent.

        The failed events stay readable through :meth:`events`.
        """
        if self._closed:
            return
        self._closed = True
        workers = list(self._workers)
        for worker in workers:
            _kill_group(worker)
        for worker in workers:
            self._retire(worker)
            if worker.workload is not None:
                self._report_failed(worker, SHUTDOWN_REASON)
        if self._selector is not None:
            self._selector.close()

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (each also its process group id)."""
        return sorted(w.pid for w in self._workers)

    def __enter__(self) -> LocalExecutor:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    # --- workers -------------------------------------------------------------------------

    def _spawn(self) -> None:
        assert self._selector is not None
        ours, theirs = socket.socketpair()
        env = {**os.environ, **self._env} if self._env else None
        cmd = [
            sys.executable,
            "-m",
            "headwater.executor.worker",
            self.runner,
            "--fd",
            str(theirs.fileno()),
            "--parent-pid",
            str(os.getpid()),
        ]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                env=env,
                cwd=self._cwd,
            )
        except OSError as exc:
            ours.close()
            raise ExecutorError(
                f"could not start a worker process ({sys.executable}): {exc}",
                hint="check the executor's cwd and that the Python executable exists",
            ) from exc
        finally:
            theirs.close()
        worker = _Worker(proc, ours)
        self._selector.register(ours, selectors.EVENT_READ, worker)
        self._workers.add(worker)
        self._idle.append(worker)

    def _replace(self) -> None:
        if self._closed or self._broken is not None:
            return
        if self._startup_failures >= MAX_STARTUP_FAILURES:
            self._broken = (
                f"{self._startup_failures} worker processes in a row exited before they were ready; "
                "their error is on this process's stderr"
            )
            return
        self._spawn()

    def _retire(self, worker: _Worker) -> int:
        """Unregister and reap a worker whose group was killed (or that exited)."""
        if self._selector is not None and worker in self._workers:
            self._selector.unregister(worker.sock)
        worker.sock.close()
        self._workers.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        try:
            return worker.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # stuck in the kernel; Popen reaps it later
            return -signal.SIGKILL

    def _end(self, worker: _Worker, reason: str) -> None:
        _kill_group(worker)
        self._retire(worker)
        if worker.workload is not None:
            self._report_failed(worker, reason)
        self._replace()

    def _on_eof(self, worker: _Worker) -> None:
        # The worker may be a zombie already: killing the group first takes its
        # leftover children without changing its exit status.
        _kill_group(worker)
        returncode = self._retire(worker)
        self._startup_failures = 0 if worker.spoke else self._startup_failures + 1
        if worker.workload is not None:
            self._report_failed(worker, worker.kill_reason or exit_reason(returncode))
        self._replace()

    def _report_failed(self, worker: _Worker, reason: str) -> None:
        workload = worker.workload
        assert workload is not None
        worker.workload = None
        event = TaskEvent(
            key=workload.key,
            state="failed",
            reason=reason,
            start=worker.started,
            end=time.time(),
            pid=worker.pid,
            hostname=hostname(),
        )
        with contextlib.suppress(OSError):
            append_footer(workload.log_path, event)
            write_event_file(event_path(workload.log_path), event)
        self._busy.pop(workload.key, None)
        self._events.append(event)

    # --- the event loop ------------------------------------------------------------------

    def _take(self) -> list[TaskEvent]:
        events, self._events = self._events, []
        return events

    def _wait_time(self, end: float | None) -> float | None:
        now = time.monotonic()
        wait = None if end is None else max(0.0, end - now)
        for worker in self._busy.values():
            due = worker.kill_at if worker.kill_at is not None else worker.deadline
            if due is not None and (wait is None or due - now < wait):
                wait = max(0.0, due - now)
        return wait

    def _read(self, wait: float | None) -> None:
        assert self._selector is not None
        view = memoryview(self._buf)
        for selected, _ in self._selector.select(wait):
            worker: _Worker = selected.data
            if worker not in self._workers:  # ended earlier in this loop
                continue
            try:
                count = worker.sock.recv_into(self._buf)
            except OSError:
                count = 0
            if count == 0:
                self._on_eof(worker)
                continue
            try:
                for kind, body in worker.reader.feed(view[:count]):
                    self._on_frame(worker, kind, body)
            except (ExecutorError, ValueError, TypeError, KeyError) as exc:
                self._end(worker, f"worker protocol error: {exc}")

    def _on_frame(self, worker: _Worker, kind: str, body: str) -> None:
        if kind == HELLO:
            worker.spoke = True
            self._startup_failures = 0
            return
        if kind != EVENT:
            raise ExecutorError(f"unexpected message kind {kind!r} from worker {worker.pid}")
        event = TaskEvent.from_json(body)
        workload = worker.workload
        if workload is None or event.key != workload.key:
            raise ExecutorError(f"worker {worker.pid} reported {event.key}, which it was not running")
        if worker.kill_at is not None:  # its end is decided (timed out): ignore late news
            return
        if event.state == "running":
            worker.started = event.start
            if workload.timeout:
                worker.deadline = time.monotonic() + workload.timeout
            self._events.append(event)
            return
        worker.workload = None
        worker.deadline = None
        del self._busy[event.key]
        self._idle.append(worker)
        self._events.append(event)

    def _expire(self, now: float) -> None:
        for worker in list(self._busy.values()):
            if worker.kill_at is not None:
                if now >= worker.kill_at:
                    self._end(worker, worker.kill_reason)
            elif worker.deadline is not None and now >= worker.deadline:
                assert worker.workload is not None and worker.workload.timeout is not None
                worker.kill_reason = timeout_reason(worker.workload.timeout)
                worker.kill_at = now + DUMP_GRACE
                with contextlib.suppress(OSError):
                    os.kill(worker.pid, signal.SIGUSR1)


def _kill_group(worker: _Worker) -> None:
    # The worker leads its own session, so its pid is its process group id; the
    # id cannot be reused before the worker is reaped, which happens after this.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGKILL)
