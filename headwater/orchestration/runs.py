"""Creating and clearing DAG runs: scheduled, manual, backfill and test runs."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from headwater.clock import ensure_utc
from headwater.errors import UserError
from headwater.orchestration.kernel import new_task_instances
from headwater.orchestration.schedules import DataInterval, timetable_for
from headwater.orchestration.spec import DagSpec
from headwater.orchestration.states import RunState, RunType, TaskState
from headwater.store.base import DagRecord, DagRunRecord, MetadataStore, TaskInstanceRecord, UnitOfWork


def run_id_for(run_type: str, logical_date: dt.datetime) -> str:
    """Airflow-style run ids: ``scheduled__2024-01-01T00:00:00+00:00``."""
    return f"{run_type}__{ensure_utc(logical_date).isoformat()}"


def create_run(
    store: MetadataStore,
    record: DagRecord,
    interval: DataInterval,
    run_type: str,
    now: dt.datetime,
    *,
    conf: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> DagRunRecord:
    """Insert a queued run and its task instances."""
    rid = run_id or run_id_for(run_type, interval.start)
    run = DagRunRecord(
        dag_id=record.dag_id,
        run_id=rid,
        logical_date=interval.start,
        data_interval_start=interval.start,
        data_interval_end=interval.end,
        run_type=run_type,
        state=RunState.QUEUED,
        conf=dict(conf or {}),
        created_at=now,
        dag_version=record.version,
    )
    return store.create_run(run, new_task_instances(record.spec, rid))


def trigger(
    store: MetadataStore,
    record: DagRecord,
    now: dt.datetime,
    *,
    logical_date: dt.datetime | None = None,
    conf: dict[str, Any] | None = None,
    run_id: str | None = None,
    run_type: str = RunType.MANUAL,
) -> DagRunRecord:
    """Create a manual run (``dags trigger``) at ``logical_date`` (default: now)."""
    when = ensure_utc(logical_date) if logical_date else now
    interval = timetable_for(record.spec.schedule, record.spec.start_date).interval_for(when)
    return create_run(store, record, interval, run_type, now, conf=conf, run_id=run_id)


@dataclass
class BackfillPlan:
    """Runs a backfill created, and existing runs it reuses or reruns."""

    created: list[DagRunRecord] = field(default_factory=list)
    rerun: list[DagRunRecord] = field(default_factory=list)
    existing: list[DagRunRecord] = field(default_factory=list)

    @property
    def runs(self) -> list[DagRunRecord]:
        return sorted([*self.created, *self.rerun], key=lambda r: r.logical_date)


def plan_backfill(
    store: MetadataStore,
    record: DagRecord,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    *,
    rerun_failed: bool = False,
    conf: dict[str, Any] | None = None,
) -> BackfillPlan:
    """Create a backfill run for every interval in [start, end] that has no run yet.

    Existing runs are left alone, except failed ones with ``rerun_failed``: their
    failed and upstream-failed task instances are cleared and the run queued again.
    ``conf`` (already checked against the DAG's params) goes to the runs created.
    """
    if ensure_utc(end) < ensure_utc(start):
        raise UserError(f"backfill end {end:%Y-%m-%d} is before start {start:%Y-%m-%d}", hint="swap them")
    plan = BackfillPlan()
    timetable = timetable_for(record.spec.schedule, record.spec.start_date)
    for interval in timetable.intervals_between(start, end):
        existing = store.find_run(record.dag_id, interval.start)
        if existing is None:
            plan.created.append(create_run(store, record, interval, RunType.BACKFILL, now, conf=conf))
        elif rerun_failed and existing.state is RunState.FAILED:
            clear_task_instances(store, record.spec, [existing], only_failed=True, now=now)
            plan.rerun.append(existing)
        elif existing.state is RunState.QUEUED and existing.run_type == RunType.BACKFILL:
            # Cleared since (`tasks clear`): the scheduler leaves backfill runs to this command.
            plan.rerun.append(existing)
        else:
            plan.existing.append(existing)
    return plan


def clear_task_instances(
    store: MetadataStore,
    spec: DagSpec,
    runs: Iterable[DagRunRecord],
    *,
    task_regex: str | None = None,
    downstream: bool = False,
    only_failed: bool = False,
    now: dt.datetime,
) -> list[TaskInstanceRecord]:
    """Reset matching task instances so they run again (``tasks clear``).

    Like Airflow: state back to ``none``, tries allowed again (``max_tries`` grows by
    the task's retries + 1), results of the cleared tries deleted, and the run
    queued again. Queued or running task instances are left alone.
    """
    pattern = re.compile(task_regex) if task_regex else None
    selected = {tid for tid in spec.tasks if pattern is None or pattern.search(tid)}
    if downstream:
        selected = spec.with_downstream(selected)
    failed_states = {TaskState.FAILED, TaskState.UPSTREAM_FAILED}
    cleared: list[TaskInstanceRecord] = []
    work = UnitOfWork()
    for run in runs:
        tis = store.list_task_instances(spec.dag_id, run.run_id, task_ids=selected)
        hit = False
        for ti in tis:
            if ti.state.active or (only_failed and ti.state not in failed_states):
                continue
            task = spec.tasks.get(ti.task_id)
            retries = task.retries if task else 0
            ti.state = TaskState.NONE
            ti.max_tries = ti.try_number + retries + 1
            ti.start_date = ti.end_date = ti.duration = ti.next_attempt_at = None
            ti.sensor_started_at = None
            ti.reason = "cleared"
            ti.updated_at = now
            work.task_instances.append(ti)
            work.clear_xcoms.append((ti.dag_id, ti.run_id, ti.task_id))
            cleared.append(ti)
            hit = True
        if hit:
            run.state = RunState.QUEUED
            run.start_date = run.end_date = None
            work.runs.append(run)
    if work:
        store.commit(work)
    return cleared


def parse_date(text: str) -> dt.datetime:
    """A date or datetime from the command line (``2024-01-01``, ``2024-01-01T06:00``), in UTC."""
    try:
        return ensure_utc(dt.datetime.fromisoformat(text))
    except ValueError as exc:
        raise UserError(
            f"cannot read {text!r} as a date", hint="write dates as YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS"
        ) from exc
