"""The DAG-run kernel: the state machine of one DAG run's task instances, with no I/O.

The scheduler owns time, the store and the executor; the kernel only decides.
Task-instance transitions (Airflow's states)::

    none ──ready──> scheduled ──queue──> queued ──running event──> running
    running ──success/skipped event──> success | skipped
    running ──failed event──> up_for_retry (tries left, retryable) ──retry time──> queued
                          └─> failed
    running ──reschedule event──> up_for_reschedule ──poke time──> queued (same try)
    none|scheduled ──upstream can no longer satisfy the trigger rule──> skipped | upstream_failed

Every change is remembered and handed out by :meth:`RunKernel.drain` as one
:class:`~headwater.store.base.UnitOfWork`, so the scheduler commits each step in a
single transaction before it acts on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping

from headwater.executor.base import TaskEvent, TaskKey
from headwater.orchestration.spec import DagSpec, TaskSpec
from headwater.orchestration.states import RunState, TaskState
from headwater.orchestration.trigger_rules import UpstreamCounts, evaluate
from headwater.store.base import DagRunRecord, TaskInstanceRecord, TryRecord, UnitOfWork, XComRecord

PastState = Callable[[str], "TaskState | None"]

_WAITING = (TaskState.NONE, TaskState.SCHEDULED)
_OK_PAST = (TaskState.SUCCESS, TaskState.SKIPPED)


def _ts(value: float | None, default: dt.datetime) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC) if value is not None else default


def new_task_instances(spec: DagSpec, run_id: str) -> list[TaskInstanceRecord]:
    """The task instances of a new run: one per task, state ``none``."""
    return [
        TaskInstanceRecord(
            dag_id=spec.dag_id,
            run_id=run_id,
            task_id=t.task_id,
            max_tries=t.retries + 1,
            operator=t.operator,
            pool=t.pool,
            pool_slots=t.pool_slots,
        )
        for t in spec.tasks.values()
    ]


class RunKernel:
    """Decides what happens next in one DAG run.

    ``past_state(task_id)`` returns the state of the same task in the previous run
    (for ``depends_on_past``), or None when there is no previous run.
    """

    def __init__(
        self,
        spec: DagSpec,
        run: DagRunRecord,
        task_instances: Iterable[TaskInstanceRecord],
        past_state: PastState | None = None,
    ) -> None:
        self.spec = spec
        self.run = run
        self.tis: dict[str, TaskInstanceRecord] = {ti.task_id: ti for ti in task_instances}
        self.past_state = past_state
        self._order = [tid for tid in spec.topological_order() if tid in self.tis]
        self._downstream = spec.downstream()
        self._dirty: dict[str, None] = {}
        self._tries: dict[tuple[str, int], TryRecord] = {}
        self._dirty_tries: dict[tuple[str, int], None] = {}
        self._xcoms: list[XComRecord] = []
        self._run_dirty = False
        # Task instances of tasks no longer in the DAG are "removed" (Airflow).
        for tid, ti in self.tis.items():
            if tid not in spec.tasks and ti.state is not TaskState.REMOVED:
                ti.state = TaskState.REMOVED
                self._dirty[tid] = None
        # Indexes kept in step with every state change (see _moved), so that one
        # scheduling step costs O(what changed), not O(tasks): a 1,000-task run
        # would otherwise pay a million trigger-rule evaluations.
        self._rank = {tid: i for i, tid in enumerate(self._order)}
        self._open: set[str] = set()
        self._active: dict[str, TaskInstanceRecord] = {}
        self._timed: dict[str, TaskInstanceRecord] = {}
        self._scheduled: dict[str, TaskInstanceRecord] = {}
        self._candidates: set[str] = set()
        self._past_blocked: set[str] = set()
        self._timed_out = False
        # Per task, how many direct upstream tasks finished in each state: a join of
        # 500 tasks is re-evaluated 500 times and must not recount 500 states each time.
        self._up: dict[str, dict[TaskState, int]] = {tid: {} for tid in spec.tasks}
        self._counted: set[str] = set()
        for ti in self.tis.values():
            self._index(ti)
            self._count(ti)

    # -- reading
    def task(self, task_id: str) -> TaskSpec:
        return self.spec.tasks[task_id]

    def active(self) -> list[TaskInstanceRecord]:
        """Task instances holding an executor slot (queued or running)."""
        return list(self._active.values())

    def next_wakeup(self) -> dt.datetime | None:
        """The earliest time a retry or a sensor reschedule becomes due."""
        times = [ti.next_attempt_at for ti in self._timed.values() if ti.next_attempt_at]
        return min(times) if times else None

    def finished(self) -> bool:
        return not self._open

    def stuck(self) -> bool:
        """Unfinished, yet nothing is running, due later, or ready (e.g. depends_on_past waits)."""
        return bool(self._open) and not (self._active or self._timed or self._scheduled or self._candidates)

    def _index(self, ti: TaskInstanceRecord) -> None:
        """File a task instance under its state in the indexes."""
        tid, state = ti.task_id, ti.state
        for index in (self._active, self._timed, self._scheduled):
            index.pop(tid, None)
        self._candidates.discard(tid)
        if state.finished:
            self._open.discard(tid)
            return
        self._open.add(tid)
        if state.active:
            self._active[tid] = ti
        elif state in (TaskState.UP_FOR_RETRY, TaskState.UP_FOR_RESCHEDULE):
            self._timed[tid] = ti
        elif state is TaskState.SCHEDULED:
            self._scheduled[tid] = ti
        elif tid in self._rank:
            self._candidates.add(tid)

    def _count(self, ti: TaskInstanceRecord) -> None:
        """Add a finished task instance to its dependants' upstream counts (once: finished is final)."""
        if ti.state.finished and ti.task_id not in self._counted and ti.task_id in self._downstream:
            self._counted.add(ti.task_id)
            for d in self._downstream[ti.task_id]:
                counts = self._up[d]
                counts[ti.state] = counts.get(ti.state, 0) + 1

    def _upstream_counts(self, task: TaskSpec) -> UpstreamCounts:
        c = self._up[task.task_id]
        return UpstreamCounts(
            total=len(task.upstream),
            success=c.get(TaskState.SUCCESS, 0),
            skipped=c.get(TaskState.SKIPPED, 0),
            failed=c.get(TaskState.FAILED, 0),
            upstream_failed=c.get(TaskState.UPSTREAM_FAILED, 0),
            removed=c.get(TaskState.REMOVED, 0),
        )

    def _moved(self, ti: TaskInstanceRecord) -> None:
        """After a state change: reindex, and let a finished task's dependants be looked at again."""
        self._index(ti)
        if ti.state.finished:
            self._count(ti)
            for d in self._downstream.get(ti.task_id, ()):
                if self.tis[d].state is TaskState.NONE:
                    self._candidates.add(d)

    # -- deciding
    def ready(self, now: dt.datetime) -> list[TaskInstanceRecord]:
        """Advance waiting task instances; return those that may be queued now.

        Walks the tasks in topological order, so a skip or failure propagates down a
        whole chain in one call.
        """
        if self.run.state is RunState.QUEUED:
            self.run.state = RunState.RUNNING
            self.run.start_date = self.run.start_date or now
            self._run_dirty = True
        rank = self._rank
        while self._candidates:
            # Lowest rank first: a skip or failure reaches a whole chain in one call.
            tid = min(self._candidates, key=rank.__getitem__)
            self._candidates.discard(tid)
            ti = self.tis[tid]
            if ti.state is not TaskState.NONE:
                continue
            task = self.spec.tasks[tid]
            verdict = evaluate(task.trigger_rule, self._upstream_counts(task))
            if verdict == "run":
                if self._past_ok(tid):
                    self._set(ti, TaskState.SCHEDULED, now)
                else:
                    self._past_blocked.add(tid)
            elif verdict == "skip":
                self._finish(ti, TaskState.SKIPPED, now, "skipped: upstream tasks were skipped")
            elif verdict == "upstream_failed":
                self._finish(ti, TaskState.UPSTREAM_FAILED, now, "an upstream task failed")
        for tid in [t for t in self._past_blocked if self._past_ok(t)]:
            self._past_blocked.discard(tid)
            if self.tis[tid].state is TaskState.NONE:
                self._set(self.tis[tid], TaskState.SCHEDULED, now)
        out = list(self._scheduled.values())
        out.extend(ti for ti in self._timed.values() if ti.next_attempt_at is None or ti.next_attempt_at <= now)
        self._settle_run(now)
        return out

    def _past_ok(self, task_id: str) -> bool:
        if not self.spec.tasks[task_id].depends_on_past or self.past_state is None:
            return True
        past = self.past_state(task_id)
        return past is None or past in _OK_PAST

    # -- acting
    def queue(self, task_id: str, now: dt.datetime, log_path: str) -> TaskInstanceRecord:
        """Mark a ready task instance queued and open its try. A sensor poke after a
        reschedule continues the same try (same number, same log)."""
        ti = self.tis[task_id]
        if ti.state is not TaskState.UP_FOR_RESCHEDULE:
            ti.try_number += 1
            ti.start_date = ti.end_date = ti.duration = None
            ti.sensor_started_at = None
            ti.pid = ti.hostname = None
        ti.state = TaskState.QUEUED
        ti.queued_at = now
        ti.next_attempt_at = None
        ti.updated_at = now
        self._dirty[task_id] = None
        self._moved(ti)
        self._try(ti, TaskState.QUEUED, log_path=log_path)
        return ti

    def apply(self, event: TaskEvent, now: dt.datetime) -> bool:
        """Apply an executor event. Returns False (and changes nothing) for a stale
        event: another try, or a task instance cleared or finished meanwhile."""
        ti = self.tis.get(event.key.task_id)
        if ti is None or ti.try_number != event.key.try_number or not ti.state.active:
            return False
        spec = self.spec.tasks.get(ti.task_id)
        if event.state == "running":
            ti.state = TaskState.RUNNING
            ti.start_date = ti.start_date or _ts(event.start, now)
            ti.pid, ti.hostname = event.pid, event.hostname
            if spec is not None and spec.is_sensor and ti.sensor_started_at is None:
                ti.sensor_started_at = _ts(event.start, now)
            ti.updated_at = now
            self._dirty[ti.task_id] = None
            self._moved(ti)
            self._try(ti, TaskState.RUNNING, start=_ts(event.start, now), pid=event.pid, host=event.hostname)
            return True
        end = _ts(event.end, now)
        ti.rendered = event.rendered or ti.rendered
        if ti.start_date is None:
            ti.start_date = _ts(event.start, end)
        if event.state == "up_for_reschedule":
            ti.state = TaskState.UP_FOR_RESCHEDULE
            ti.next_attempt_at = _ts(event.reschedule_at, now)
            ti.reason = event.reason or "sensor condition not met; poking again later"
            ti.updated_at = now
            self._dirty[ti.task_id] = None
            self._moved(ti)
            self._try(ti, TaskState.UP_FOR_RESCHEDULE, reason=ti.reason)
            return True
        for key, value in event.xcom.items():
            self._xcoms.append(XComRecord(ti.dag_id, ti.run_id, ti.task_id, key, value, created_at=end))
        if event.state == "success":
            self._finish(ti, TaskState.SUCCESS, end, event.reason)
        elif event.state == "skipped":
            self._finish(ti, TaskState.SKIPPED, end, event.reason)
        elif event.retryable and ti.try_number < ti.max_tries and spec is not None:
            ti.state = TaskState.UP_FOR_RETRY
            ti.end_date = end
            ti.duration = (end - ti.start_date).total_seconds() if ti.start_date else None
            # The scheduler's clock, not the worker's end time, sets the retry time.
            ti.next_attempt_at = now + dt.timedelta(seconds=spec.retry_wait(ti.try_number))
            ti.reason = event.reason
            ti.updated_at = now
            self._dirty[ti.task_id] = None
            self._moved(ti)
            self._try(ti, TaskState.FAILED, end=end, reason=event.reason)
        else:
            self._finish(ti, TaskState.FAILED, end, event.reason)
        for skip_id in event.skip:
            other = self.tis.get(skip_id)
            if other is not None and other.state in _WAITING:
                self._finish(other, TaskState.SKIPPED, end, f"skipped by {ti.task_id}")
        return True

    def fail_orphan(self, task_id: str, now: dt.datetime, reason: str) -> None:
        """A queued or running try whose process is gone: count it as a failed try."""
        ti = self.tis[task_id]
        event = TaskEvent(
            key=_key(ti), state="failed", reason=reason, end=now.timestamp(), retryable=True
        )
        if ti.state is TaskState.QUEUED:
            ti.state = TaskState.RUNNING  # so apply() accepts it
            self._moved(ti)
        self.apply(event, now)

    def timed_out(self, now: dt.datetime) -> bool:
        """True once a running run has outlived its DAG's ``dagrun_timeout``."""
        limit = self.spec.dagrun_timeout
        start = self.run.start_date
        return bool(limit) and start is not None and not self.run.state.finished and (
            (now - start).total_seconds() > (limit or 0)
        )

    def time_out(self, now: dt.datetime) -> list[TaskInstanceRecord]:
        """End the run as failed (Airflow's ``dagrun_timeout``): task instances not running
        are skipped; the running ones are returned for the scheduler to kill, and their
        failure will not be retried."""
        reason = f"the run timed out after {self.spec.dagrun_timeout:g}s (dagrun_timeout)"
        running = list(self._active.values())
        for ti in [t for t in self.tis.values() if not t.state.finished and not t.state.active]:
            self._finish(ti, TaskState.SKIPPED, now, reason)
        for ti in running:
            ti.max_tries = ti.try_number  # the kill that follows must not be retried
        self._timed_out = True
        self._settle_run(now)
        return running

    def fail_missing_pool(self, task_id: str, now: dt.datetime) -> None:
        """Fail a task whose pool does not exist (a user error, said plainly)."""
        ti = self.tis[task_id]
        pool = self.spec.tasks[task_id].pool
        self._finish(ti, TaskState.FAILED, now, f"pool {pool!r} does not exist; create it with "
                     f"`headwater pools set {pool} SLOTS` and clear the task")

    # -- bookkeeping
    def _set(self, ti: TaskInstanceRecord, state: TaskState, now: dt.datetime) -> None:
        ti.state = state
        ti.updated_at = now
        self._dirty[ti.task_id] = None
        self._moved(ti)

    def _finish(self, ti: TaskInstanceRecord, state: TaskState, end: dt.datetime, reason: str) -> None:
        was_tried = ti.state.active
        ti.state = state
        ti.end_date = end
        ti.duration = (end - ti.start_date).total_seconds() if ti.start_date and was_tried else None
        ti.reason = reason
        ti.next_attempt_at = None
        ti.updated_at = end
        self._dirty[ti.task_id] = None
        self._moved(ti)
        if was_tried:
            self._try(ti, state, end=end, reason=reason)

    def _try(
        self,
        ti: TaskInstanceRecord,
        state: TaskState,
        *,
        log_path: str | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        pid: int | None = None,
        host: str | None = None,
        reason: str = "",
    ) -> None:
        key = (ti.task_id, ti.try_number)
        rec = self._tries.get(key)
        if rec is None:
            rec = TryRecord(ti.dag_id, ti.run_id, ti.task_id, ti.try_number, state, operator=ti.operator)
            self._tries[key] = rec
        rec.state = state
        rec.log_path = log_path or rec.log_path
        rec.start_date = start or rec.start_date or ti.start_date
        rec.pid = pid or rec.pid
        rec.hostname = host or rec.hostname
        if end is not None:
            rec.end_date = end
            rec.duration = (end - rec.start_date).total_seconds() if rec.start_date else None
        if reason:
            rec.reason = reason
        self._dirty_tries[key] = None

    def _settle_run(self, now: dt.datetime) -> None:
        if self.run.state.finished or not self.finished():
            return
        leaves = [tid for tid in self.spec.tasks if not self._downstream[tid] and tid in self.tis]
        bad = (TaskState.FAILED, TaskState.UPSTREAM_FAILED)
        failed = self._timed_out or any(self.tis[tid].state in bad for tid in leaves)
        self.run.state = RunState.FAILED if failed else RunState.SUCCESS
        self.run.end_date = now
        self._run_dirty = True

    def settle(self, now: dt.datetime) -> None:
        """Update the run's state if every task instance has finished."""
        self._settle_run(now)

    def drain(self) -> UnitOfWork:
        """Hand out every change since the last drain, as one unit of work."""
        work = UnitOfWork(
            task_instances=[self.tis[tid] for tid in self._dirty],
            tries=[self._tries[k] for k in self._dirty_tries],
            xcoms=self._xcoms,
            runs=[self.run] if self._run_dirty else [],
        )
        # Open tries stay cached so later events update the same record.
        self._dirty = {}
        self._dirty_tries = {}
        self._tries = {k: v for k, v in self._tries.items() if not v.state.finished}
        self._xcoms = []
        self._run_dirty = False
        return work


def _key(ti: TaskInstanceRecord) -> TaskKey:
    return TaskKey(ti.dag_id, ti.run_id, ti.task_id, ti.try_number)


def merge(works: Iterable[UnitOfWork]) -> UnitOfWork:
    """Several units of work as one (one transaction for a whole scheduling step)."""
    out = UnitOfWork()
    for w in works:
        out.task_instances.extend(w.task_instances)
        out.tries.extend(w.tries)
        out.runs.extend(w.runs)
        out.xcoms.extend(w.xcoms)
        out.clear_xcoms.extend(w.clear_xcoms)
    return out


def counts_by_state(tis: Mapping[str, TaskInstanceRecord]) -> dict[TaskState, int]:
    """How many task instances are in each state."""
    out: dict[TaskState, int] = {}
    for ti in tis.values():
        out[ti.state] = out.get(ti.state, 0) + 1
    return out
