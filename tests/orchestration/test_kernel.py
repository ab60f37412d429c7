"""The DAG-run kernel driven directly with events: no store, no executor, no sleeps."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.executor.base import TaskEvent, TaskKey
from headwater.orchestration.kernel import RunKernel, new_task_instances
from headwater.orchestration.spec import DagSpec, TaskSpec
from headwater.orchestration.states import RunState, TaskState, TriggerRule
from headwater.store.base import DagRunRecord

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def make(tasks: list[TaskSpec], past=None) -> RunKernel:
    spec = DagSpec(dag_id="d", tasks={t.task_id: t for t in tasks})
    run = DagRunRecord("d", "r1", T0, T0, T0 + dt.timedelta(days=1), "manual")
    return RunKernel(spec, run, new_task_instances(spec, "r1"), past)


def go(k: RunKernel, task_id: str, outcome: str, now: dt.datetime = T0, **kw) -> None:
    """Queue a task, report it running, then report ``outcome``."""
    ti = k.queue(task_id, now, f"/logs/{task_id}.log")
    key = TaskKey("d", "r1", task_id, ti.try_number)
    assert k.apply(TaskEvent(key, "running", start=now.timestamp(), pid=42, hostname="h"), now)
    assert k.apply(TaskEvent(key, outcome, start=now.timestamp(), end=now.timestamp() + 1, **kw), now)  # type: ignore[arg-type]


def ids(tis) -> list[str]:
    return [t.task_id for t in tis]


def test_chain_runs_in_order_and_run_succeeds() -> None:
    k = make([TaskSpec("a"), TaskSpec("b", upstream=("a",)), TaskSpec("c", upstream=("b",))])
    assert ids(k.ready(T0)) == ["a"]
    go(k, "a", "success")
    assert ids(k.ready(T0)) == ["b"]
    go(k, "b", "success")
    go(k, "c", "success")
    k.ready(T0)
    assert k.finished() and k.run.state is RunState.SUCCESS
    work = k.drain()
    assert {t.task_id for t in work.task_instances} == {"a", "b", "c"}
    assert [(t.task_id, t.state) for t in work.tries] == [(x, TaskState.SUCCESS) for x in "abc"]
    assert work.runs == [k.run]
    assert not k.drain()  # nothing changed since


def test_retry_with_exponential_backoff_then_fail_propagates() -> None:
    k = make([
        TaskSpec("a", retries=2, retry_delay=10, retry_exponential_backoff=True),
        TaskSpec("b", upstream=("a",)),
        TaskSpec("cleanup", upstream=("a",), trigger_rule=TriggerRule.ALL_DONE),
    ])
    k.ready(T0)
    go(k, "a", "failed", reason="boom")
    ti = k.tis["a"]
    assert ti.state is TaskState.UP_FOR_RETRY
    end = T0 + dt.timedelta(seconds=1)
    assert ti.next_attempt_at == T0 + dt.timedelta(seconds=10)
    assert k.ready(end + dt.timedelta(seconds=5)) == []  # not yet
    later = end + dt.timedelta(seconds=10)
    assert ids(k.ready(later)) == ["a"]
    go(k, "a", "failed", later)
    assert k.tis["a"].try_number == 2
    assert k.tis["a"].next_attempt_at == later + dt.timedelta(seconds=20)  # doubled
    go(k, "a", "failed", later + dt.timedelta(seconds=30))
    assert k.tis["a"].state is TaskState.FAILED and k.tis["a"].try_number == 3
    assert ids(k.ready(later)) == ["cleanup"]
    assert k.tis["b"].state is TaskState.UPSTREAM_FAILED
    go(k, "cleanup", "success")
    k.ready(later)
    # A leaf (b) failed upstream: the run fails although cleanup succeeded.
    assert k.run.state is RunState.FAILED


def test_non_retryable_failure_skips_remaining_retries() -> None:
    k = make([TaskSpec("a", retries=5)])
    k.ready(T0)
    go(k, "a", "failed", retryable=False)
    assert k.tis["a"].state is TaskState.FAILED


def test_branch_skip_propagates_and_join_runs() -> None:
    k = make([
        TaskSpec("branch"),
        TaskSpec("left", upstream=("branch",)),
        TaskSpec("right", upstream=("branch",)),
        TaskSpec("after_right", upstream=("right",)),
        TaskSpec("join", upstream=("left", "after_right"), trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS),
    ])
    k.ready(T0)
    go(k, "branch", "success", skip=("right",))
    assert ids(k.ready(T0)) == ["left"]
    assert k.tis["right"].state is TaskState.SKIPPED
    assert k.tis["after_right"].state is TaskState.SKIPPED  # propagated in the same pass
    go(k, "left", "success")
    assert ids(k.ready(T0)) == ["join"]


def test_reschedule_keeps_the_try_number() -> None:
    k = make([TaskSpec("sensor", is_sensor=True, sensor_mode="reschedule")])
    k.ready(T0)
    go(k, "sensor", "up_for_reschedule", reschedule_at=(T0 + dt.timedelta(seconds=60)).timestamp())
    ti = k.tis["sensor"]
    assert ti.state is TaskState.UP_FOR_RESCHEDULE and ti.try_number == 1
    assert ti.sensor_started_at == T0
    assert k.ready(T0 + dt.timedelta(seconds=30)) == []
    assert ids(k.ready(T0 + dt.timedelta(seconds=60))) == ["sensor"]
    go(k, "sensor", "success", T0 + dt.timedelta(seconds=60))
    assert ti.try_number == 1 and ti.state is TaskState.SUCCESS
    assert ti.sensor_started_at == T0  # the timeout clock did not restart


def test_stale_events_are_ignored() -> None:
    k = make([TaskSpec("a", retries=1)])
    k.ready(T0)
    go(k, "a", "failed")
    k.ready(T0 + dt.timedelta(hours=1))
    k.queue("a", T0, "/l")
    stale = TaskEvent(TaskKey("d", "r1", "a", 1), "success")
    assert not k.apply(stale, T0)
    assert k.tis["a"].state is TaskState.QUEUED


def test_depends_on_past_waits_for_the_previous_run() -> None:
    past = {"a": TaskState.FAILED}
    k = make([TaskSpec("a", depends_on_past=True)], past=past.get)
    assert k.ready(T0) == []
    assert k.stuck()
    past["a"] = TaskState.SUCCESS
    assert ids(k.ready(T0)) == ["a"]


def test_orphan_counts_as_a_failed_try() -> None:
    k = make([TaskSpec("a", retries=1, retry_delay=0)])
    k.ready(T0)
    k.queue("a", T0, "/l")
    k.fail_orphan("a", T0, "orphaned")
    assert k.tis["a"].state is TaskState.UP_FOR_RETRY
    assert k.tis["a"].reason == "orphaned"


@st.composite
def random_dag(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 12))
    tasks = []
    for i in range(n):
        ups = draw(st.lists(st.integers(0, max(0, i - 1)), max_size=3, unique=True)) if i else []
        rule = draw(st.sampled_from(list(TriggerRule)))
        tasks.append(TaskSpec(f"t{i}", upstream=tuple(f"t{u}" for u in ups), trigger_rule=rule))
    outcomes = {t.task_id: draw(st.sampled_from(["success", "failed", "skipped"])) for t in tasks}
    return tasks, outcomes


@settings(max_examples=200, deadline=None)
@given(random_dag())
def test_every_run_terminates_and_respects_trigger_rules(case) -> None:  # type: ignore[no-untyped-def]
    tasks, outcomes = case
    k = make(tasks)
    ran: list[str] = []
    for _ in range(len(tasks) + 1):
        ready = k.ready(T0)
        if not ready:
            break
        for ti in ready:
            spec = k.spec.tasks[ti.task_id]
            ups = [k.tis[u].state for u in spec.upstream]
            if spec.trigger_rule is TriggerRule.ALL_SUCCESS:
                assert all(s is TaskState.SUCCESS for s in ups)
            if spec.trigger_rule in (TriggerRule.ALL_DONE, TriggerRule.NONE_FAILED, TriggerRule.ALL_FAILED):
                assert all(s.finished for s in ups)
            ran.append(ti.task_id)
            go(k, ti.task_id, outcomes[ti.task_id])
    assert k.finished()
    assert k.run.state in (RunState.SUCCESS, RunState.FAILED)
    assert len(ran) == len(set(ran))  # nothing ran twice
