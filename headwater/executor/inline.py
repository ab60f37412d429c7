"""InlineExecutor: runs each workload in the calling process (``dags test``).

Like Airflow's in-process ``dags test``: no worker processes, one try at a time,
run when :meth:`InlineExecutor.events` is called. A debugger or a profiler
attached to this process sees the task's code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import replace
from types import FrameType, TracebackType

from headwater.errors import ExecutorError, TaskTimeoutError
from headwater.executor.base import TaskEvent, TaskKey, Workload
from headwater.executor.events import event_path, write_event_file
from headwater.executor.worker import (
    DEFAULT_RUNNER,
    Runner,
    append_footer,
    failed_event,
    hostname,
    run_try,
    timeout_reason,
    unrunnable_event,
)

SHUTDOWN_REASON = "executor shut down"


def call_with_alarm(runner: Runner, workload: Workload) -> TaskEvent:
    """Call ``runner``, raising :class:`TaskTimeoutError` inside it after ``workload.timeout``.

    Uses SIGALRM, so the timeout is enforced only on the main thread; elsewhere a
    warning goes to the try's log. A timer already armed by the caller (pytest-timeout
    uses one) is re-armed afterwards with the time it had left.
    """
    timeout = workload.timeout
    if not timeout:
        return runner(workload)
    if threading.current_thread() is not threading.main_thread():
        print(
            f"[headwater] execution_timeout of {timeout:g}s not enforced: not on the main thread",
            file=sys.stderr,
        )
        return runner(workload)
    reason = timeout_reason(timeout)
    fired = False

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        fired = True
        raise TaskTimeoutError(reason)

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    armed_at = time.monotonic()
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        try:
            event = runner(workload)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except TaskTimeoutError:
        if not fired:
            raise
        traceback.print_exc()
        return failed_event(workload, reason)
    finally:
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            left = previous_delay - (time.monotonic() - armed_at)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), previous_interval)
    if fired and isinstance(event, TaskEvent) and event.state == "failed":
        # The runner caught the timeout raised in the task and reported it its way.
        event = replace(event, reason=reason)
    return event


class InlineExecutor:
    """Runs workloads in this process, one at a time, inside :meth:`events`.

    ``runner`` is the dotted path ``"package.module:function"`` to call. The try's
    output (fd 1 and 2) goes to its log file; with ``echo`` it is also copied to
    this process's standard output.
    """

    parallelism = 1

    def __init__(self, runner: str = DEFAULT_RUNNER, *, echo: bool = False) -> None:
        self.runner = runner
        self.echo = echo
        self._queue: deque[Workload] = deque()
        self._events: list[TaskEvent] = []
        self._closed = False

    def start(self) -> None:
        """Nothing to start."""
        if self._closed:
            raise ExecutorError("the executor was shut down", hint="create a new InlineExecutor")

    def submit(self, workload: Workload) -> None:
        """Queue ``workload``; it runs at the next :meth:`events` call."""
        self.start()
        if workload.key in self.running_keys():
            raise ExecutorError(f"{workload.key} is already running", hint="submit each try once")
        if self._queue:
            raise ExecutorError(
                f"no free slot for {workload.key}: {self._queue[0].key} is waiting to run",
                hint="submit only as many workloads as free_slots() returns",
            )
        self._queue.append(workload)

    def events(self, timeout: float | None = 0.0) -> list[TaskEvent]:
        """Run the queued workload (however long it takes) and return its events.

        ``timeout`` is ignored: the try runs to its end in this call.
        """
        events, self._events = self._events, []
        while self._queue:
            workload = self._queue.popleft()
            running = TaskEvent(workload.key, "running", start=time.time(), pid=os.getpid(), hostname=hostname())
            events.append(running)
            try:
                event = run_try(workload, self.runner, call=call_with_alarm, echo=self.echo, propagate_interrupt=True)
            except Exception as exc:  # the log or event file cannot be written
                event = unrunnable_event(workload, exc)
            events.append(event)
        return events

    def free_slots(self) -> int:
        """1 when nothing is queued, else 0."""
        return 0 if self._closed or self._queue else 1

    def running_keys(self) -> set[TaskKey]:
        """The queued key and keys whose failed event :meth:`events` has not returned yet."""
        keys = {w.key for w in self._queue}
        keys.update(e.key for e in self._events if e.state != "running")
        return keys

    def kill(self, key: TaskKey, reason: str = "killed") -> None:
        """Drop a queued workload, reporting it failed. A try already running is not interruptible."""
        for workload in list(self._queue):
            if workload.key == key:
                self._queue.remove(workload)
                self._fail(workload, reason)

    def shutdown(self) -> None:
        """Report queued workloads failed. Idempotent."""
        self._closed = True
        while self._queue:
            self._fail(self._queue.popleft(), SHUTDOWN_REASON)

    def __enter__(self) -> InlineExecutor:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def _fail(self, workload: Workload, reason: str) -> None:
        event = failed_event(workload, reason, end=time.time(), pid=os.getpid(), hostname=hostname())
        with contextlib.suppress(OSError):
            append_footer(workload.log_path, event)
            write_event_file(event_path(workload.log_path), event)
        self._events.append(event)
