"""DAG runs: pages of runs with filters, one run with its task instances."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.errors import UserError
from headwater.orchestration.states import RunState, TaskState
from headwater.web.services.masking import mask_mapping, mask_urls
from headwater.web.services.pages import check_page

if TYPE_CHECKING:
    from headwater.orchestration.spec import DagSpec
    from headwater.store.base import DagRunRecord, TaskInstanceRecord
    from headwater.web.services.context import WebContext


@dataclass
class RunInfo:
    """One DAG run."""

    dag_id: str
    run_id: str
    run_type: str
    state: RunState
    logical_date: dt.datetime
    data_interval_start: dt.datetime
    data_interval_end: dt.datetime
    created_at: dt.datetime | None
    start_date: dt.datetime | None
    end_date: dt.datetime | None
    duration: float | None  # seconds, when the run has started and ended
    conf: dict[str, Any] = field(default_factory=dict)  # secrets masked
    dag_version: int = 1


@dataclass
class RunPage:
    """A page of runs, newest first, and how many match in all."""

    items: list[RunInfo]
    total: int
    limit: int
    offset: int


@dataclass
class TaskInstanceInfo:
    """One task in one run: its state, its latest try and its times."""

    task_id: str
    state: TaskState
    try_number: int
    max_tries: int
    operator: str
    pool: str
    start_date: dt.datetime | None
    end_date: dt.datetime | None
    duration: float | None
    queued_at: dt.datetime | None
    hostname: str | None
    reason: str
    upstream: list[str] = field(default_factory=list)


@dataclass
class RunDetail(RunInfo):
    """A run with its task instances in dependency order and counts by state."""

    task_instances: list[TaskInstanceInfo] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def run_info(run: DagRunRecord, spec: DagSpec | None = None) -> RunInfo:
    """The API's view of a run record (conf masked)."""
    duration = (run.end_date - run.start_date).total_seconds() if run.end_date and run.start_date else None
    return RunInfo(
        dag_id=run.dag_id, run_id=run.run_id, run_type=run.run_type, state=run.state,
        logical_date=run.logical_date, data_interval_start=run.data_interval_start,
        data_interval_end=run.data_interval_end, created_at=run.created_at, start_date=run.start_date,
        end_date=run.end_date, duration=duration, conf=mask_mapping(run.conf), dag_version=run.dag_version,
    )


def parse_states(names: list[str] | None) -> list[RunState] | None:
    """Run states from their names; a UserError listing the valid ones otherwise."""
    if not names:
        return None
    valid = [s.value for s in RunState]
    for name in names:
        if name not in valid:
            raise UserError(f"{name!r} is not a run state", hint=f"run states: {', '.join(valid)}")
    return [RunState(n) for n in names]


def list_runs(
    ctx: WebContext,
    dag_id: str | None = None,
    *,
    states: list[str] | None = None,
    run_types: list[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> RunPage:
    """Runs newest first (by logical date), filtered by DAG, state, type and logical-date range."""
    check_page(limit, offset)
    if dag_id is not None:
        from headwater.web.services.dags import get_record

        get_record(ctx, dag_id)
    wanted = parse_states(states)
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and end < start:
        raise UserError(f"the date range ends ({end:%Y-%m-%d %H:%M}) before it starts ({start:%Y-%m-%d %H:%M})",
                        hint="swap start and end")
    rows = ctx.store.list_runs(dag_id, states=wanted, run_types=run_types or None, start=start, end=end,
                               limit=limit, offset=offset)
    total = _count_runs(ctx, dag_id, wanted, run_types, start, end)
    return RunPage([run_info(r) for r in rows], total, limit, offset)


def get_run(ctx: WebContext, dag_id: str, run_id: str) -> RunDetail:
    """One run with its task instances (in the DAG's dependency order)."""
    from headwater.web.services.dags import get_record

    spec = get_record(ctx, dag_id).spec
    run = get_run_record(ctx, dag_id, run_id)
    tis = ctx.store.list_task_instances(dag_id, run_id)
    rank = {tid: i for i, tid in enumerate(spec.topological_order())}
    tis.sort(key=lambda ti: (rank.get(ti.task_id, len(rank)), ti.task_id))
    counts: dict[str, int] = {}
    for ti in tis:
        counts[ti.state.value] = counts.get(ti.state.value, 0) + 1
    items = [ti_info(ti, spec) for ti in tis]
    return RunDetail(**vars(run_info(run, spec)), task_instances=items, counts=counts)


def get_run_record(ctx: WebContext, dag_id: str, run_id: str) -> DagRunRecord:
    """The run ``run_id`` of ``dag_id``; a UserError with a hint when there is none."""
    run = ctx.store.get_run(dag_id, run_id)
    if run is None:
        raise UserError(f"DAG {dag_id!r} has no run {run_id!r}",
                        hint=f"GET /api/v1/dags/{dag_id}/runs lists its runs")
    return run


def ti_info(ti: TaskInstanceRecord, spec: DagSpec | None = None) -> TaskInstanceInfo:
    task = spec.tasks.get(ti.task_id) if spec else None
    return TaskInstanceInfo(
        task_id=ti.task_id, state=ti.state, try_number=ti.try_number, max_tries=ti.max_tries, operator=ti.operator,
        pool=ti.pool, start_date=ti.start_date, end_date=ti.end_date, duration=ti.duration, queued_at=ti.queued_at,
        hostname=ti.hostname, reason=mask_urls(ti.reason), upstream=list(task.upstream) if task else [],
    )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _count_runs(
    ctx: WebContext,
    dag_id: str | None,
    states: list[RunState] | None,
    run_types: list[str] | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> int:
    """How many runs match, counted in the database (the store's list has no count)."""
    from sqlalchemy import func, select

    from headwater.store import schema

    r = schema.dag_runs
    query = select(func.count()).select_from(r)
    if dag_id is not None:
        query = query.where(r.c.dag_id == dag_id)
    if states:
        query = query.where(r.c.state.in_([str(s) for s in states]))
    if run_types:
        query = query.where(r.c.run_type.in_(run_types))
    if start is not None:
        query = query.where(r.c.logical_date >= start)
    if end is not None:
        query = query.where(r.c.logical_date <= end)
    with ctx.store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
