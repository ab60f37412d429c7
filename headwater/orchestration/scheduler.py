"""The scheduler loop: create runs from schedules, queue ready tasks, commit events.

One step of the loop, in order (the order is what makes it crash-safe):

1. Sync: load queued/running runs from the store into kernels; task instances that
   are queued or running but not known to our executor are orphans of a dead
   scheduler or worker: adopt a finished try from its event file, else count a
   failed try (retried by the task's policy).
2. Create the runs whose schedule interval has ended (catchup, max_active_runs).
3. Ask each kernel what is ready; pick within executor slots, pools and
   max_active_tasks; **commit** them as queued; only then submit them.
4. Wait for executor events (or the next retry, reschedule or schedule time);
   apply them to the kernels and **commit** before anything else is queued.

A task recorded as succeeded is therefore never run again, and a try that ran
while its outcome was not yet committed is either adopted or retried.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.clock import Clock, SystemClock
from headwater.errors import InfrastructureError
from headwater.executor.base import Executor, RunInfo, TaskEvent, TaskKey, Workload
from headwater.orchestration.kernel import RunKernel, merge
from headwater.orchestration.layout import artifact_dir, log_path
from headwater.orchestration.runs import create_run
from headwater.orchestration.schedules import DataInterval, timetable_for
from headwater.orchestration.states import RunState, RunType, TaskState
from headwater.settings import Settings
from headwater.store.base import DagRecord, DagRunRecord, MetadataStore, UnitOfWork

if TYPE_CHECKING:
    from headwater.monitoring.metrics import SchedulerMetrics

log = logging.getLogger("headwater.scheduler")

RunKey = tuple[str, str]
# Run types the main scheduler leaves to the command that created them.
_FOREIGN_TYPES = (RunType.BACKFILL, RunType.TEST)


@dataclass
class SchedulerOptions:
    """How long and on what a scheduler runs.

    ``only_runs`` restricts it to given runs (``dags test``, ``dags backfill``), which
    also stops it from creating scheduled runs.
    """

    until_idle: bool = False
    once: bool = False
    only_runs: set[RunKey] | None = None
    dag_ids: set[str] | None = None
    take_lease: bool = True
    force: bool = False
    heartbeat: float = 1.0
    max_seconds: float | None = None


@dataclass
class SchedulerReport:
    """What a scheduler did: runs finished, and runs it had to leave unfinished."""

    finished: dict[RunKey, RunState] = field(default_factory=dict)
    stuck: list[RunKey] = field(default_factory=list)
    tries: int = 0
    tasks_done: int = 0

    def progress(self, scheduler: Scheduler) -> int:
        """Task instances finished so far, in finished and in active runs."""
        live = sum(1 for k in scheduler.kernels.values() for ti in k.tis.values() if ti.state.finished)
        return self.tasks_done + live


class Scheduler:
    """Drives DAG runs to completion through an executor, with state in a store."""

    def __init__(
        self,
        store: MetadataStore,
        executor: Executor,
        settings: Settings,
        options: SchedulerOptions | None = None,
        *,
        clock: Clock | None = None,
        refresh_dags: Callable[[], Any] | None = None,
        on_step: Callable[[Scheduler], None] | None = None,
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings
        self.options = options or SchedulerOptions()
        self.clock = clock or SystemClock()
        self.refresh_dags = refresh_dags
        self.on_step = on_step
        self.metrics = metrics  # Prometheus (headwater.monitoring); None: nothing measured
        self._applying = 0.0  # seconds spent applying events since the last measured step
        self.kernels: dict[RunKey, RunKernel] = {}
        self.report = SchedulerReport()
        self._records: dict[str, DagRecord] = {}
        self._xcoms: dict[RunKey, dict[str, dict[str, dict[str, Any]]]] = {}
        self._pools: dict[str, int] = {}
        self._last_scheduled: dict[str, DataInterval | None] = {}
        self._next_sync = 0.0
        self._next_parse = 0.0
        self._next_schedule_check = 0.0
        self._job_id: int | None = None
        self._stop = False

    # -- public
    def run(self) -> SchedulerReport:
        """Loop until idle, once, stopped, or forever (a long-running scheduler)."""
        opts = self.options
        started = self.clock.monotonic()
        if opts.take_lease:
            self._take_lease()
        self.executor.start()
        try:
            while not self._stop:
                step_started = time.perf_counter()
                self._maybe_sync()
                now = self.clock.now()
                if opts.only_runs is None and self._runs_due(now) and self._create_scheduled_runs(now):
                    self._load_runs()
                submitted = self._dispatch(now)
                finite = opts.until_idle or opts.once or opts.only_runs is not None
                if finite and not submitted and self._idle() and not self._waiting_for_time():
                    # Idle now; but a finished run may have made room for a due one.
                    if opts.only_runs is None and self._create_scheduled_runs(now):
                        self._load_runs()
                        continue
                    break
                if opts.max_seconds is not None and self.clock.monotonic() - started > opts.max_seconds:
                    break
                if self.metrics is not None:
                    self._measure_step(time.perf_counter() - step_started)
                self._wait_and_apply()
                if opts.once and not self.executor.running_keys():
                    break
        finally:
            self._shutdown()
        self.report.stuck = [k for k, kern in self.kernels.items() if kern.stuck()]
        return self.report

    def stop(self) -> None:
        """Ask the loop to end after the current step (signal handlers call this)."""
        self._stop = True

    # -- step 1: sync with the store
    def _maybe_sync(self, force: bool = False) -> None:
        mono = self.clock.monotonic()
        if not force and mono < self._next_sync:
            return
        self._next_sync = mono + self.options.heartbeat
        if self._job_id is not None:
            self.store.heartbeat(self._job_id, self.clock.now())
        if self.refresh_dags is not None and mono >= self._next_parse and self.options.only_runs is None:
            summary = self.refresh_dags()
            if self.metrics is not None:
                self.metrics.parsed(summary)
            self._next_parse = mono + self.settings.min_file_process_interval
            self._records.clear()
        self._pools = {p.name: p.slots for p in self.store.list_pools()}
        self._load_runs()

    def _load_runs(self) -> None:
        opts = self.options
        runs = self.store.list_runs(
            states=(RunState.QUEUED, RunState.RUNNING), limit=None, newest_first=False
        )
        mine = self.executor.running_keys()
        in_flight = {(t.dag_id, t.run_id) for t in mine}
        now = self.clock.now()
        for run in runs:
            key = (run.dag_id, run.run_id)
            if opts.only_runs is not None and key not in opts.only_runs:
                continue
            if opts.only_runs is None and run.run_type in _FOREIGN_TYPES:
                continue
            if opts.dag_ids is not None and run.dag_id not in opts.dag_ids:
                continue
            kernel = self.kernels.get(key)
            if kernel is not None and key in in_flight:
                continue  # work in flight: memory is authoritative
            record = self._record(run.dag_id)
            if record is None:
                continue
            tis = self.store.list_task_instances(run.dag_id, run.run_id)
            kernel = RunKernel(record.spec, run, tis, self._past_state_fn(run))
            self.kernels[key] = kernel
            self._xcoms[key] = self._load_xcoms(run)
            self._recover_orphans(kernel, mine, now)
        self._commit(merge(k.drain() for k in self.kernels.values()))

    def _record(self, dag_id: str) -> DagRecord | None:
        rec = self._records.get(dag_id)
        if rec is None:
            rec = self.store.get_dag(dag_id)
            if rec is not None:
                self._records[dag_id] = rec
        return rec

    def _load_xcoms(self, run: DagRunRecord) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for x in self.store.get_xcoms(run.dag_id, run.run_id):
            out.setdefault(x.task_id, {})[x.key] = x.value
        return out

    def _recover_orphans(self, kernel: RunKernel, mine: set[TaskKey], now: dt.datetime) -> None:
        from headwater.executor.events import read_event_file

        for ti in kernel.active():
            key = TaskKey(ti.dag_id, ti.run_id, ti.task_id, ti.try_number)
            if key in mine:
                continue
            path = self._log_path(key)
            event = read_event_file(str(path))
            if event is not None and event.key == key:
                log.warning("adopting finished try %s from %s", key, path)
                if ti.state is TaskState.QUEUED:
                    ti.state = TaskState.RUNNING
                if kernel.apply(event, now):
                    self._count_try(event)
                self._remember_xcoms(event)
                continue
            _kill_stale_worker(ti.pid, ti.hostname)
            reason = "orphaned: the scheduler or worker running this try died before it finished"
            log.warning("%s: %s", key, reason)
            kernel.fail_orphan(ti.task_id, now, reason)
            if self.metrics is not None:
                self.metrics.try_finished(key.dag_id, key.task_id, "failed", None)

    def _past_state_fn(self, run: DagRunRecord) -> Callable[[str], TaskState | None]:
        cache: dict[str, TaskState | None] = {}
        prev: list[DagRunRecord | None] = []

        def past_state(task_id: str) -> TaskState | None:
            if not prev:
                earlier = self.store.list_runs(
                    run.dag_id, end=run.logical_date - dt.timedelta(microseconds=1), limit=1
                )
                prev.append(earlier[0] if earlier else None)
            p = prev[0]
            if p is None:
                return None
            live = self.kernels.get((p.dag_id, p.run_id))
            if live is not None and task_id in live.tis:
                return live.tis[task_id].state
            if task_id not in cache:
                ti = self.store.get_task_instance(p.dag_id, p.run_id, task_id)
                cache[task_id] = ti.state if ti else None
            state = cache[task_id]
            if state is not None and not state.finished:
                cache.pop(task_id)  # may still change: ask again next time
            return state

        return past_state

    # -- step 2: scheduled runs
    def _runs_due(self, now: dt.datetime) -> bool:
        """Look for due schedules once per heartbeat, not on every step (it reads every DAG)."""
        mono = self.clock.monotonic()
        if mono < self._next_schedule_check:
            return False
        self._next_schedule_check = mono + self.options.heartbeat
        return True

    def _create_scheduled_runs(self, now: dt.datetime) -> int:
        """Create the runs whose interval has ended; returns how many."""
        created = 0
        for record in self.store.list_dags():
            spec = record.spec
            if record.is_paused or spec.schedule is None:
                continue
            if self.options.dag_ids is not None and record.dag_id not in self.options.dag_ids:
                continue
            timetable = timetable_for(spec.schedule, spec.start_date)
            if record.dag_id not in self._last_scheduled:
                last = self.store.list_runs(record.dag_id, run_types=[RunType.SCHEDULED], limit=1)
                self._last_scheduled[record.dag_id] = (
                    DataInterval(last[0].data_interval_start, last[0].data_interval_end) if last else None
                )
            active = sum(
                1 for k in self.kernels.values() if k.run.dag_id == record.dag_id and not k.run.state.finished
            )
            while active < spec.max_active_runs:
                interval = timetable.next_interval(
                    self._last_scheduled[record.dag_id],
                    start_date=spec.start_date,
                    end_date=spec.end_date,
                    catchup=spec.catchup,
                    now=now,
                )
                if interval is None or not _due(interval, now):
                    break
                self._last_scheduled[record.dag_id] = interval
                if self.store.find_run(record.dag_id, interval.start) is not None:
                    continue  # a manual or backfill run already covers it
                run = create_run(self.store, record, interval, RunType.SCHEDULED, now)
                log.info("created run %s of %s", run.run_id, run.dag_id)
                active += 1
                created += 1
        return created

    # -- step 3: queue and submit
    def _dispatch(self, now: dt.datetime) -> int:
        free = self.executor.free_slots()
        pool_used: dict[str, int] = {}
        dag_used: dict[str, int] = {}
        running_runs: dict[str, int] = {}
        for kernel in self.kernels.values():
            if kernel.run.state is RunState.RUNNING:
                running_runs[kernel.run.dag_id] = running_runs.get(kernel.run.dag_id, 0) + 1
            for ti in kernel.active():
                pool_used[ti.pool] = pool_used.get(ti.pool, 0) + ti.pool_slots
                dag_used[ti.dag_id] = dag_used.get(ti.dag_id, 0) + 1
        workloads: list[Workload] = []
        for _key, kernel in sorted(self.kernels.items(), key=lambda kv: kv[1].run.logical_date):
            run = kernel.run
            if run.state.finished:
                continue
            if kernel.timed_out(now):
                for ti in kernel.time_out(now):
                    key = TaskKey(ti.dag_id, ti.run_id, ti.task_id, ti.try_number)
                    self.executor.kill(key, f"the run timed out after {kernel.spec.dagrun_timeout:g}s")
                continue
            if run.state is RunState.QUEUED:
                if running_runs.get(run.dag_id, 0) >= kernel.spec.max_active_runs:
                    continue
                running_runs[run.dag_id] = running_runs.get(run.dag_id, 0) + 1
            for ti in kernel.ready(now):
                if free <= 0:
                    break
                task = kernel.spec.tasks[ti.task_id]
                slots = self._pools.get(task.pool)
                if slots is None:
                    kernel.fail_missing_pool(ti.task_id, now)
                    continue
                if pool_used.get(task.pool, 0) + task.pool_slots > slots:
                    continue
                if dag_used.get(run.dag_id, 0) >= kernel.spec.max_active_tasks:
                    break
                tkey = TaskKey(run.dag_id, run.run_id, ti.task_id, ti.try_number + (
                    0 if ti.state is TaskState.UP_FOR_RESCHEDULE else 1))
                path = self._log_path(tkey)
                kernel.queue(ti.task_id, now, str(path))
                workloads.append(self._workload(kernel, tkey, path))
                free -= 1
                pool_used[task.pool] = pool_used.get(task.pool, 0) + task.pool_slots
                dag_used[run.dag_id] = dag_used.get(run.dag_id, 0) + 1
            kernel.settle(now)
        self._commit(merge(k.drain() for k in self.kernels.values()))  # queued before submitted
        for workload in workloads:
            self.executor.submit(workload)
        self.report.tries += len(workloads)
        self._forget_finished()
        return len(workloads)

    def _workload(self, kernel: RunKernel, key: TaskKey, path: Path) -> Workload:
        run, spec = kernel.run, kernel.spec
        task = spec.tasks[key.task_id]
        xcoms = self._xcoms.get((run.dag_id, run.run_id), {})
        inputs = {up: xcoms[up] for up in task.upstream if up in xcoms}
        kind, fileloc = ("classic", spec.fileloc[len("classic:") :]) if spec.fileloc.startswith(
            "classic:"
        ) else ("dag", spec.fileloc)
        ti = kernel.tis[key.task_id]
        return Workload(
            key=key,
            fileloc=fileloc,
            kind=kind,
            run=RunInfo(
                run_id=run.run_id,
                logical_date=run.logical_date.isoformat(),
                data_interval_start=run.data_interval_start.isoformat(),
                data_interval_end=run.data_interval_end.isoformat(),
                run_type=run.run_type,
                conf=run.conf,
            ),
            log_path=str(path),
            artifact_dir=str(artifact_dir(self.settings.artifacts_folder, run.dag_id, run.run_id)),
            max_tries=ti.max_tries,
            timeout=task.execution_timeout,
            force=self.options.force,
            inputs=inputs,
            params=dict(spec.params),
            classic_params={k: str(v) for k, v in run.conf.items()} if kind == "classic" else {},
            db_url=self.store.url,
            sensor_started_at=ti.sensor_started_at.isoformat() if ti.sensor_started_at else None,
            xcom_inline_limit=self.settings.xcom_inline_limit,
        )

    def _log_path(self, key: TaskKey) -> Path:
        return log_path(self.settings.logs_folder, key)

    # -- step 4: wait and apply
    def _wait_and_apply(self) -> None:
        timeout = self._wait_timeout()
        if not self.executor.running_keys():
            self.clock.sleep(timeout)
            return
        events = self.executor.events(timeout)
        if events:
            self._apply(events)

    def _apply(self, events: list[TaskEvent]) -> None:
        started = time.perf_counter()
        now = self.clock.now()
        for event in events:
            kernel = self.kernels.get((event.key.dag_id, event.key.run_id))
            if kernel is None or not kernel.apply(event, now):
                log.debug("ignored stale event %s %s", event.key, event.state)
                continue
            self._count_try(event)
            self._remember_xcoms(event)
            kernel.settle(now)
        self._commit(merge(k.drain() for k in self.kernels.values()))
        self._forget_finished()
        self._applying += time.perf_counter() - started
        if self.on_step is not None:
            self.on_step(self)

    def _remember_xcoms(self, event: TaskEvent) -> None:
        if event.xcom:
            run = self._xcoms.setdefault((event.key.dag_id, event.key.run_id), {})
            run.setdefault(event.key.task_id, {}).update(event.xcom)

    def _wait_timeout(self) -> float:
        now = self.clock.now()
        wake = [k.next_wakeup() for k in self.kernels.values()]
        soonest = min((w for w in wake if w is not None), default=None)
        timeout = self.options.heartbeat
        if soonest is not None:
            timeout = min(timeout, max(0.0, (soonest - now).total_seconds()))
        return timeout

    # -- metrics (only with self.metrics)
    def _count_try(self, event: TaskEvent) -> None:
        """A try that ended (not the "running" event of its start) counts once, by its end state."""
        if self.metrics is None or event.state == "running":
            return
        seconds = event.end - event.start if event.end is not None and event.start is not None else None
        self.metrics.try_finished(event.key.dag_id, event.key.task_id, event.state, seconds)

    def _measure_step(self, seconds: float) -> None:
        assert self.metrics is not None
        queued = running = 0
        for kernel in self.kernels.values():
            for ti in kernel.active():
                if ti.state is TaskState.QUEUED:
                    queued += 1
                elif ti.state is TaskState.RUNNING:
                    running += 1
        self.metrics.step_done(seconds + self._applying, queued=queued, running=running)
        self._applying = 0.0

    # -- bookkeeping
    def _idle(self) -> bool:
        if self.executor.running_keys():
            return False
        return all(k.run.state.finished or k.stuck() for k in self.kernels.values())

    def _waiting_for_time(self) -> bool:
        """Unfinished runs wait only for a retry or reschedule time."""
        return any(k.next_wakeup() is not None for k in self.kernels.values() if not k.run.state.finished)

    def _forget_finished(self) -> None:
        for key in [k for k, kern in self.kernels.items() if kern.run.state.finished]:
            self.report.finished[key] = self.kernels[key].run.state
            self.report.tasks_done += len(self.kernels[key].tis)
            del self.kernels[key]
            self._xcoms.pop(key, None)

    def _commit(self, work: UnitOfWork) -> None:
        if work:
            self.store.commit(work)

    def _take_lease(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        for job in self.store.list_scheduler_jobs(running_only=True):
            if job.hostname == host and job.pid != pid and _pid_alive(job.pid):
                raise InfrastructureError(
                    f"another scheduler (pid {job.pid}) is running on this database",
                    hint="stop it first, or point HEADWATER_HOME / HEADWATER_DB_URL elsewhere",
                )
            self.store.end_scheduler_job(job.id, self.clock.now())
        self._job_id = self.store.start_scheduler_job(host, pid, self.clock.now()).id

    def _shutdown(self) -> None:
        try:
            if self.executor.running_keys():
                self.executor.shutdown()
                self._apply(self.executor.events(0))
            else:
                self.executor.shutdown()
        finally:
            if self._job_id is not None:
                self.store.end_scheduler_job(self._job_id, self.clock.now())


def _due(interval: DataInterval, now: dt.datetime) -> bool:
    """A run is due once its interval has ended (``@once``: once it has started)."""
    return (interval.end if interval.end > interval.start else interval.start) <= now


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_stale_worker(pid: int | None, hostname: str | None) -> None:
    """Kill a worker left over from a dead scheduler, if it is still running here."""
    if not pid or hostname != socket.gethostname() or not _pid_alive(pid):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"headwater.executor.worker" in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

