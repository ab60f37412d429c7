"""Plain-data messages of the ports survive JSON: specs go to the DB, workloads and events cross pipes."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from headwater.executor.base import RunInfo, TaskEvent, TaskKey, Workload
from headwater.orchestration.spec import DagSpec, TaskSpec
from headwater.orchestration.states import TriggerRule

text = st.text(min_size=1, max_size=20)
json_scalar = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                            max_size=4), max_leaves=12)
aware = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1),
                     timezones=st.just(dt.UTC))
seconds = st.floats(min_value=0, max_value=1e7, allow_nan=False)


@st.composite
def dag_specs(draw):  # type: ignore[no-untyped-def]
    ids = draw(st.lists(text, min_size=1, max_size=6, unique=True))
    tasks = {}
    for i, tid in enumerate(ids):
        tasks[tid] = TaskSpec(
            task_id=tid,
            upstream=tuple(draw(st.lists(st.sampled_from(ids[:i]), unique=True)) if i else ()),
            trigger_rule=draw(st.sampled_from(list(TriggerRule))),
            retries=draw(st.integers(0, 10)),
            retry_delay=draw(seconds),
            execution_timeout=draw(st.none() | seconds),
            start_date=draw(st.none() | aware),
            is_sensor=draw(st.booleans()),
        )
    return DagSpec(
        dag_id=draw(text), tasks=tasks, schedule=draw(st.none() | st.sampled_from(["@once", "0 0 * * *", "every:60"])),
        start_date=draw(st.none() | aware), catchup=draw(st.booleans()), tags=tuple(draw(st.lists(text, max_size=3))),
        params=draw(st.dictionaries(st.text(max_size=8), json_value, max_size=3)),
    )


@given(dag_specs())
def test_dag_spec_json_round_trip(spec: DagSpec) -> None:
    assert DagSpec.from_json(spec.to_json()) == spec


keys = st.builds(TaskKey, text, text, text, st.integers(1, 100))


@given(keys, json_value, st.dictionaries(text, st.dictionaries(st.text(max_size=8), st.fixed_dictionaries(
    {"json": json_value}), max_size=2), max_size=3), st.none() | seconds)
def test_workload_json_round_trip(key: TaskKey, conf: object, inputs: dict, timeout: float | None) -> None:  # type: ignore[type-arg]
    w = Workload(key=key, fileloc="/d/x.py", run=RunInfo("r", "2024-01-01T00:00:00+00:00", "a", "b",
                 conf={"c": conf}), log_path="/l", artifact_dir="/a", inputs=inputs, timeout=timeout)
    assert Workload.from_json(w.to_json()) == w


@given(keys, st.sampled_from(["running", "success", "failed", "skipped", "up_for_reschedule"]), st.text(),
       st.dictionaries(st.text(max_size=8), st.fixed_dictionaries({"json": json_value}), max_size=3),
       st.lists(text, max_size=3), st.booleans())
def test_task_event_json_round_trip(key: TaskKey, state: str, reason: str, xcom: dict, skip: list[str],  # type: ignore[type-arg]
                                    retryable: bool) -> None:
    e = TaskEvent(key, state, reason, start=1.5, end=2.5, xcom=xcom, skip=tuple(skip),  # type: ignore[arg-type]
                  retryable=retryable)
    assert TaskEvent.from_json(e.to_json()) == e
