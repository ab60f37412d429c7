"""Property: whatever goes into the store comes back equal (ids, unicode, datetimes, JSON)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.orchestration.states import RunState, TaskState
from headwater.store.base import DagRunRecord, TaskInstanceRecord, TryRecord, UnitOfWork, XComRecord
from headwater.store.sql import SqlStore, open_store

# Text every backend stores: no NUL (PostgreSQL rejects it) and no lone surrogates (not UTF-8).
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
ids = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40)
zones = st.builds(
    dt.timezone, st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: dt.timedelta(minutes=m))
)
moments = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1), timezones=zones)
maybe_moments = st.none() | moments
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
small = st.integers(min_value=0, max_value=2**31 - 1)
floats = st.none() | st.floats(allow_nan=False, allow_infinity=False)

_counter = itertools.count()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    path: Path = tmp_path_factory.mktemp("prop") / "headwater.db"
    with open_store(f"sqlite:///{path}", create=True) as store:
        yield store


@settings(max_examples=60, deadline=None)
@given(
    dag_id=ids,
    run_id=ids,
    task_id=ids,
    logical_date=moments,
    conf=st.dictionaries(text, json_values, max_size=5),
    run_state=st.sampled_from(RunState),
    ti_state=st.sampled_from(TaskState),
    dates=st.lists(maybe_moments, min_size=6, max_size=6),
    numbers=st.lists(small, min_size=4, max_size=4),
    duration=floats,
    reason=text,
    hostname=st.none() | text,
    rendered=st.dictionaries(text, text, max_size=4),
    xcom_key=ids,
    xcom_value=st.dictionaries(text, json_values, max_size=4),
)
def test_records_round_trip(
    sqlite_store: SqlStore,
    dag_id: str,
    run_id: str,
    task_id: str,
    logical_date: dt.datetime,
    conf: dict[str, object],
    run_state: RunState,
    ti_state: TaskState,
    dates: list[dt.datetime | None],
    numbers: list[int],
    duration: float | None,
    reason: str,
    hostname: str | None,
    rendered: dict[str, str],
    xcom_key: str,
    xcom_value: dict[str, object],
) -> None:
    dag_id = f"{dag_id}#{next(_counter)}"  # every example gets its own DAG
    run = DagRunRecord(
        dag_id=dag_id,
        run_id=run_id,
        logical_date=logical_date,
        data_interval_start=logical_date,
        data_interval_end=logical_date + dt.timedelta(hours=1),
        run_type="manual",
        state=run_state,
        conf=conf,
        start_date=dates[0],
        end_date=dates[1],
        dag_version=numbers[0],
    )
    created = sqlite_store.create_run(run, [])
    ti = TaskInstanceRecord(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        state=ti_state,
        try_number=numbers[1],
        max_tries=numbers[2],
        operator=reason,
        pool=task_id,
        pool_slots=numbers[3],
        start_date=dates[2],
        end_date=dates[3],
        duration=duration,
        queued_at=dates[4],
        hostname=hostname,
        pid=numbers[1],
        next_attempt_at=dates[5],
        sensor_started_at=dates[0],
        reason=reason,
        rendered=rendered,
        updated_at=logical_date,
    )
    attempt = TryRecord(dag_id, run_id, task_id, numbers[1], ti_state, dates[2], dates[3], duration, reason)
    xcom = XComRecord(dag_id, run_id, task_id, xcom_key, xcom_value, created_at=logical_date)
    sqlite_store.commit(UnitOfWork(task_instances=[ti], tries=[attempt], xcoms=[xcom]))

    assert sqlite_store.get_run(dag_id, run_id) == created
    assert sqlite_store.find_run(dag_id, logical_date) == created
    got = sqlite_store.get_task_instance(dag_id, run_id, task_id)
    assert got == ti
    assert got is not None
    stamps = [got.start_date, got.end_date, got.queued_at, got.next_attempt_at, got.updated_at]
    assert all(d is None or d.tzinfo == dt.UTC for d in stamps)
    assert sqlite_store.list_tries(dag_id, run_id, task_id) == [attempt]
    assert sqlite_store.get_xcoms(dag_id, run_id) == [xcom]
