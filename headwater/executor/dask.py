"""DaskExecutor: runs workloads on a Dask distributed cluster.

Each try is one Dask task, :func:`headwater.executor.dask_task.run_workload`,
which runs the try in a child process of the Dask worker (the LocalExecutor's
worker program, for one try) and returns the terminal event as JSON. Timeouts,
crashes and kills end that child's process group, never a Dask worker thread.
The try's log and event file are written on the worker's machine, at the paths
the workload names, so they are where the scheduler looks when the logs folder
is shared (always, on a local cluster).

Events reach the scheduler's thread through a queue filled from Dask's threads:

- ``running`` is sent by the Dask task once the child has started the try, as a
  Dask structured event on a topic of this executor (``Worker.log_event`` and
  ``Client.subscribe_topic``). Reporting it from the worker, not at submit time,
  gives the scheduler the real pid and host name of the try (which its orphan
  recovery uses) and tells a try that is running from one that Dask has queued.
- the terminal event is the future's result, fetched by a done callback. A future
  that errs (the Dask worker died: ``KilledWorker``; the task could not be
  unpickled) or is cancelled becomes a failed event with the reason; the
  executor then appends the log footer and writes the event file itself, as far
  as it can reach them.

A terminal event whose ``running`` event has not arrived (they travel different
paths) is preceded by a ``running`` event made from it, so the scheduler always
sees ``running`` first.

Only this module and :mod:`headwater.executor.dask_task` know about Dask, and
``distributed`` is imported when the executor starts, not at import time.

At most once: on a cluster this executor starts, the Dask scheduler does not run
a task again after its worker died (``allowed_failures=0``). On a cluster given by
``address``, set ``distributed.scheduler.allowed-failures: 0`` there for the same
guarantee; a try whose Dask worker died is then reported failed and the task's
retry policy decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from headwater.errors import ExecutorError
from headwater.executor.base import TaskEvent, TaskKey, Workload
from headwater.executor.dask_task import kill_tries, run_workload
from headwater.executor.events import event_path, write_event_file
from headwater.executor.local import SHUTDOWN_REASON
from headwater.executor.worker import DEFAULT_RUNNER, TERMINAL_STATES, append_footer, exception_reason, failed_event

log = logging.getLogger(__name__)

# How long shutdown waits for killed tries to report their own failed event
# (with the pid and start the log shows) before reporting them itself.
SHUTDOWN_GRACE = 5.0
# How long to wait for the Dask scheduler at an address, by default.
CONNECT_TIMEOUT = 10.0


# Dask's objects (Client, LocalCluster, Future) are typed as Any here: most of
# their methods carry no annotations, and only this module touches them.


@dataclass(eq=False)
class _Entry:
    workload: Workload
    dask_key: str
    future: Any  # distributed.Future
    running: TaskEvent | None = None
    worker: str | None = None  # the Dask worker address, once it reported running
    kill_reason: str | None = None


class DaskExecutor:
    """Runs workloads as Dask tasks, each try in a child process of a Dask worker.

    ``address`` is a Dask scheduler's (``"tcp://127.0.0.1:8786"``); without one, a
    ``LocalCluster`` of ``parallelism`` single-threaded worker processes on
    127.0.0.1 is started, with ``cluster_kwargs`` passed on to it. ``parallelism``
    (how many tries run at once) defaults to the cluster's total threads.
    ``runner`` is the dotted path the tries call; ``env`` holds variables added to
    the tries' environment, ``cwd`` is their working directory. ``connect_timeout``
    bounds the wait for the scheduler at ``address``.

    Drive one executor from one thread; Dask's own threads only fill its queue.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        parallelism: int | None = None,
        runner: str = DEFAULT_RUNNER,
        cluster_kwargs: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.address = address
        self.runner = runner
        self._requested = None if parallelism is None else max(1, parallelism)
        # Known before start for a cluster we size ourselves; else once connected.
        self.parallelism = self._requested or (0 if address else (os.cpu_count() or 1))
        self._cluster_kwargs = dict(cluster_kwargs or {})
        self._env = dict(env) if env else None
        self._cwd = cwd
        self._connect_timeout = connect_timeout
        self._topic = f"headwater-running-{uuid.uuid4().hex}"
        self._client: Any = None  # distributed.Client, once started
        self._cluster: Any = None  # the distributed.LocalCluster we started, if any
        self._cond = threading.Condition()
        self._inflight: dict[TaskKey, _Entry] = {}  # guarded by _cond, as is _events
        self._by_dask_key: dict[str, _Entry] = {}
        self._events: list[TaskEvent] = []
        self._closed = False

    # --- Executor protocol ---------------------------------------------------------------

    def start(self) -> None:
        """Connect to the Dask scheduler, or start a local cluster. Idempotent."""
        if self._closed:
            raise ExecutorError("the executor was shut down", hint="create a new DaskExecutor")
        if self._client is not None:
            return
        try:
            import distributed
        except ImportError as exc:
            raise ExecutorError(
                f"the Dask executor needs the 'distributed' package: {exc}",
                hint="install it with: pip install 'headwater[dask]'",
            ) from exc
        if self.address is not None:
            self._client = self._connect(distributed)
        else:
            self._cluster, self._client = self._start_cluster(distributed)
        try:
            if self._requested is None:
                self.parallelism = self._cluster_threads()
            self._client.subscribe_topic(self._topic, self._on_running)
        except BaseException:
            self._close_dask()
            self._client = self._cluster = None
            raise

    def submit(self, workload: Workload) -> None:
        """Submit ``workload`` as a Dask task. Raises :class:`ExecutorError` when no slot is free."""
        self.start()
        assert self._client is not None
        key = workload.key
        if key in self.running_keys():
            raise ExecutorError(f"{key} is already running", hint="submit each try once")
        if self.free_slots() <= 0:
            raise ExecutorError(
                f"no free slot for {key}: all {self.parallelism} are busy",
                hint="submit only as many workloads as free_slots() returns",
            )
        dask_key = f"headwater-{key.dag_id}.{key.task_id}-{uuid.uuid4().hex}"
        future = self._client.submit(
            run_workload,
            dask_key,
            workload.to_json(),
            self.runner,
            self._topic,
            self._env,
            self._cwd,
            key=dask_key,
            pure=False,
        )
        entry = _Entry(workload, dask_key, future)
        with self._cond:
            self._inflight[key] = entry
            self._by_dask_key[dask_key] = entry
        # Registered after the entry exists: a callback for a future that is
        # already done runs at once.
        future.add_done_callback(self._on_done)

    def events(self, timeout: float | None = 0.0) -> list[TaskEvent]:
        """Return the events produced since the last call (see :class:`Executor`)."""
        end = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._events:
                if timeout is None and not self._inflight:
                    return []
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return []
                self._cond.wait(left)
            events, self._events = self._events, []
            return events

    def free_slots(self) -> int:
        """``parallelism`` less the tries submitted and not finished."""
        if self._closed:
            return 0
        with self._cond:
            return max(0, self.parallelism - len(self._inflight))

    def running_keys(self) -> set[TaskKey]:
        """Keys submitted whose terminal event :meth:`events` has not returned yet."""
        with self._cond:
            keys = set(self._inflight)
            keys.update(e.key for e in self._events if e.state in TERMINAL_STATES)
        return keys

    def kill(self, key: TaskKey, reason: str = "killed") -> None:
        """Kill the try of ``key`` (its process group on the Dask worker); a failed event follows.

        A try Dask has not started yet is cancelled and reported failed at once.
        """
        with self._cond:
            entry = self._inflight.get(key)
            if entry is None:
                return
            entry.kill_reason = reason
            worker = entry.worker
        found = self._kill_remote([entry.dask_key], reason, worker)
        if not found and worker is None:
            # Not started anywhere: the mark left on the workers stops it should
            # it start after all.
            entry.future.cancel()
            self._finish(entry, self._failed(entry, reason))

    def shutdown(self) -> None:
        """Kill running tries and report them failed, then close the client and our cluster.

        Idempotent; the failed events stay readable through :meth:`events`.
        """
        if self._closed:
            return
        self._closed = True
        if self._client is None:
            return
        # Step 1. Kill every try on the workers; each reports its own failed event.
        with self._cond:
            entries = list(self._inflight.values())
            for entry in entries:
                entry.kill_reason = entry.kill_reason or SHUTDOWN_REASON
        if entries:
            self._kill_remote([e.dask_key for e in entries], SHUTDOWN_REASON, None)
        # Step 2. Wait a moment for those events.
        deadline = time.monotonic() + SHUTDOWN_GRACE
        with self._cond:
            while self._inflight and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            leftovers = list(self._inflight.values())
        # Step 3. Report the rest (queued in Dask, or their worker is unreachable).
        for entry in leftovers:
            entry.future.cancel()
            self._finish(entry, self._failed(entry, SHUTDOWN_REASON))
        # Step 4. Close the client, then the cluster we started.
        self._close_dask()

    def __enter__(self) -> DaskExecutor:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    @property
    def client(self) -> Any:
        """The Dask client, once started (for dashboards and diagnostics)."""
        return self._client

    # --- Dask --------------------------------------------------------------------------

    def _connect(self, distributed: Any) -> Any:
        # Try the address first: a Client whose constructor fails to connect
        # lingers, and its finaliser times out again later, far from the cause.
        try:
            asyncio.run(_probe(distributed, self.address, self._connect_timeout))
            client = distributed.Client(self.address, timeout=self._connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ExecutorError(
                f"could not connect to the Dask scheduler at {self.address}: {exception_reason(exc)}",
                hint="start one (dask scheduler --host 127.0.0.1) or give no address for a local cluster",
            ) from exc
        return client

    def _start_cluster(self, distributed: Any) -> tuple[Any, Any]:
        try:
            cluster = distributed.LocalCluster(**local_cluster_kwargs(self.parallelism, self._cluster_kwargs))
        except (OSError, RuntimeError, TimeoutError) as exc:
            raise ExecutorError(
                f"could not start a local Dask cluster: {exception_reason(exc)}",
                hint="check cluster_kwargs, or start a cluster yourself and give its address",
            ) from exc
        try:
            client = distributed.Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        return cluster, client

    def _cluster_threads(self) -> int:
        """The cluster's worker threads, once it has a worker (a cluster may still be starting)."""
        assert self._client is not None
        if not self._client.nthreads():
            try:
                self._client.wait_for_workers(1, timeout=self._connect_timeout)
            except TimeoutError:
                raise ExecutorError(
                    f"the Dask cluster at {self.address} has no workers after {self._connect_timeout:g}s",
                    hint="start workers (dask worker ADDRESS), or give parallelism to submit to it anyway",
                ) from None
        return max(1, int(sum(self._client.nthreads().values())))

    def _kill_remote(self, dask_keys: list[str], reason: str, worker: str | None) -> list[str]:
        """Kill tries on ``worker`` (every worker when ``None``); the keys found running."""
        assert self._client is not None
        try:
            replies = self._client.run(
                kill_tries, dask_keys, reason, workers=[worker] if worker else None, on_error="return"
            )
        except Exception:  # no worker reachable: the futures' own errors report the tries
            return []
        return [key for reply in replies.values() if isinstance(reply, list) for key in reply]

    def _close_dask(self) -> None:
        # Shutdown runs in the scheduler's ``finally``: a cluster that is gone
        # already must not turn it into an error.
        client, cluster = self._client, self._cluster
        assert client is not None
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(self._topic)
        try:
            client.close()
        except Exception as exc:
            log.warning("closing the Dask client failed: %s", exception_reason(exc))
        if cluster is not None:
            try:
                cluster.close()
            except Exception as exc:
                log.warning("closing the local Dask cluster failed: %s", exception_reason(exc))

    # --- events, from Dask's threads -----------------------------------------------------

    def _on_running(self, event: tuple[float, dict[str, str]]) -> None:
        """A Dask worker relayed a try's ``running`` event (on the client's event loop)."""
        _, msg = event
        with self._cond:
            entry = self._by_dask_key.get(msg.get("key", ""))
            if entry is None or entry.running is not None:
                return  # finished already, or a late duplicate
            try:
                running = TaskEvent.from_json(msg["event"])
            except (KeyError, ValueError, TypeError):
                return  # not ours to crash on: the terminal event still comes
            entry.running, entry.worker = running, msg.get("worker")
            self._events.append(running)
            self._cond.notify_all()

    def _on_done(self, future: Any) -> None:
        """A try's future finished, erred or was cancelled (on Dask's callback thread)."""
        with self._cond:
            entry = self._by_dask_key.get(future.key)
        if entry is None:
            return
        try:
            event = self._terminal(entry, future)
        except Exception as exc:  # whatever happens here, the try must be reported
            event = self._failed(entry, f"could not read the try's result from Dask: {exception_reason(exc)}")
        self._finish(entry, event)

    def _terminal(self, entry: _Entry, future: Any) -> TaskEvent:
        if future.status == "finished":
            event = TaskEvent.from_json(future.result())
            if event.key != entry.workload.key:
                raise ExecutorError(f"the Dask task returned an event for {event.key}")
            return event
        if future.status == "cancelled":
            return self._failed(entry, entry.kill_reason or "cancelled by Dask before it finished")
        exc = future.exception()
        if type(exc).__name__ == "KilledWorker":
            reason = "Dask worker process died while running the try (KilledWorker)"
        else:
            reason = f"Dask could not run the try: {exception_reason(exc)}"
        return self._failed(entry, reason)

    def _failed(self, entry: _Entry, reason: str) -> TaskEvent:
        """A failed event made here, for a try whose Dask task did not report; footer and event file too."""
        workload, running = entry.workload, entry.running
        event = failed_event(
            workload,
            reason,
            start=running.start if running else None,
            end=time.time(),
            pid=running.pid if running else None,
            hostname=running.hostname if running else None,
        )
        with contextlib.suppress(OSError):  # on another machine's disk, perhaps
            append_footer(workload.log_path, event)
            write_event_file(event_path(workload.log_path), event)
        return event

    def _finish(self, entry: _Entry, event: TaskEvent) -> None:
        """Queue the terminal event of ``entry``, once (later reports are dropped)."""
        with self._cond:
            if self._inflight.get(entry.workload.key) is not entry:
                return
            del self._inflight[entry.workload.key]
            del self._by_dask_key[entry.dask_key]
            if entry.running is None and event.pid is not None:
                # The running event is still on its way (or lost): the scheduler
                # must see the try start before it ends.
                self._events.append(
                    TaskEvent(event.key, "running", start=event.start, pid=event.pid, hostname=event.hostname)
                )
            self._events.append(event)
            self._cond.notify_all()


def local_cluster_kwargs(n_workers: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``LocalCluster`` arguments of a DaskExecutor without address, with ``overrides`` applied.

    Single-threaded worker processes (one try each), everything listening on
    127.0.0.1, no dashboard, and no run again of a task whose worker died.
    """
    kwargs: dict[str, Any] = {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        # The scheduler serves its health and metrics routes in any case, on port
        # 8787 unless told otherwise: a free port on loopback instead, so two
        # clusters on one machine do not collide.
        "dashboard_address": "127.0.0.1:0",
        **(overrides or {}),
    }
    kwargs["scheduler_kwargs"] = {"dashboard": False, "allowed_failures": 0, **kwargs.get("scheduler_kwargs", {})}
    return kwargs


async def _probe(distributed: Any, address: str | None, timeout: float) -> None:
    """Open and close one connection to the Dask scheduler at ``address``."""
    comm = await distributed.comm.connect(address, timeout=timeout)
    await comm.close()
