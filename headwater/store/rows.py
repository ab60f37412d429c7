"""Mapping between the store's records and table rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.engine import CursorResult, RowMapping

from headwater.clock import ensure_utc
from headwater.errors import StoreError
from headwater.orchestration.spec import DagSpec
from headwater.orchestration.states import RunState, TaskState
from headwater.store import schema as s
from headwater.store.base import DagRecord, DagRunRecord, TaskInstanceRecord

TI_COLS = tuple(c.name for c in s.task_instances.c)
TRY_COLS = tuple(c.name for c in s.task_tries.c)
RUN_COLS = tuple(c.name for c in s.dag_runs.c if c.name != "id")


def duplicate_run(run: DagRunRecord, run_id: str, logical_date: dt.datetime) -> StoreError:
    when = ensure_utc(logical_date).isoformat()
    if run_id == run.run_id:
        what = f"a run with run id {run_id!r} (logical date {when})"
    else:
        what = f"a run for logical date {when} (run id {run_id!r})"
    return StoreError(
        f"DAG {run.dag_id!r} already has {what}; cannot create run {run.run_id!r}",
        hint="use a different run id or logical date, or clear the existing run",
    )


def run_row(run: DagRunRecord, now: dt.datetime) -> dict[str, Any]:
    row = {c: getattr(run, c) for c in RUN_COLS}
    row["state"] = str(run.state)
    row["run_type"] = str(run.run_type)
    row["created_at"] = run.created_at or now
    return row


def ti_row(ti: TaskInstanceRecord, now: dt.datetime) -> dict[str, Any]:
    row = {c: getattr(ti, c) for c in TI_COLS}
    row["state"] = str(ti.state)
    row["updated_at"] = ti.updated_at or now
    return row


def new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return int(key[0])


def run_record(row: RowMapping) -> DagRunRecord:
    return DagRunRecord(**(dict(row) | {"state": RunState(row["state"])}))


def ti_record(row: RowMapping) -> TaskInstanceRecord:
    return TaskInstanceRecord(**(dict(row) | {"state": TaskState(row["state"])}))


def dag_record(row: RowMapping) -> DagRecord:
    return DagRecord(
        dag_id=row["dag_id"],
        fileloc=row["fileloc"],
        spec=DagSpec.from_json(row["spec"]),
        source_hash=row["source_hash"],
        version=row["version"],
        is_paused=bool(row["is_paused"]),
        is_active=bool(row["is_active"]),
        last_parsed_at=row["last_parsed_at"],
    )
