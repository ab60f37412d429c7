"""Reads the pages need that the shared services do not offer, each one query (no N+1).

Kept here, next to the pages, so the service layer stays what the REST API needs; the API
engineer may move any of these into ``headwater.web.services`` later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from headwater.store import schema as s

if TYPE_CHECKING:
    from headwater.store.sql import SqlStore

#: How many recent runs the DAG list shows as dots.
RECENT_RUNS = 8


@dataclass(slots=True)
class RunDot:
    """A run, as small as the DAG list and the grid need it."""

    run_id: str
    state: str
    logical_date: dt.datetime
    start_date: dt.datetime | None
    end_date: dt.datetime | None
    run_type: str = ""

    @property
    def duration(self) -> float | None:
        if self.start_date is None or self.end_date is None:
            return None
        return (self.end_date - self.start_date).total_seconds()


def count_runs(store: SqlStore, dag_id: str) -> int:
    """How many runs a DAG has (for pagination)."""
    r = s.dag_runs
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(r).where(r.c.dag_id == dag_id)).scalar_one())


def run_page(store: SqlStore, dag_id: str, *, limit: int, offset: int) -> list[RunDot]:
    """One page of a DAG's runs, newest first."""
    r = s.dag_runs
    query = (
        select(r.c.run_id, r.c.state, r.c.logical_date, r.c.start_date, r.c.end_date, r.c.run_type)
        .where(r.c.dag_id == dag_id)
        .order_by(r.c.logical_date.desc(), r.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with store.engine.connect() as conn:
        return [
            RunDot(row["run_id"], row["state"], row["logical_date"], row["start_date"], row["end_date"],
                   row["run_type"])
            for row in conn.execute(query).mappings()
        ]


def ti_states(store: SqlStore, dag_id: str, run_ids: Sequence[str]) -> dict[tuple[str, str], tuple[str, int]]:
    """``(run_id, task_id) -> (state, try_number)`` for the given runs, in one query."""
    if not run_ids:
        return {}
    t = s.task_instances
    query = select(t.c.run_id, t.c.task_id, t.c.state, t.c.try_number).where(
        t.c.dag_id == dag_id, t.c.run_id.in_(list(run_ids))
    )
    with store.engine.connect() as conn:
        return {(row[0], row[1]): (row[2], row[3]) for row in conn.execute(query)}


