"""Trigger rules against Airflow's table, and invariants over every combination of upstream states."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.orchestration.states import TaskState, TriggerRule
from headwater.orchestration.trigger_rules import UpstreamCounts, evaluate

S, F, K, U, N = (TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED,
                 TaskState.RUNNING)


@pytest.mark.parametrize(
    ("rule", "states", "verdict"),
    [
        (TriggerRule.ALL_SUCCESS, [S, S], "run"),
        (TriggerRule.ALL_SUCCESS, [S, N], "wait"),
        (TriggerRule.ALL_SUCCESS, [S, F], "upstream_failed"),
        (TriggerRule.ALL_SUCCESS, [S, K], "skip"),
        (TriggerRule.ALL_SUCCESS, [U, N], "upstream_failed"),
        (TriggerRule.ALL_FAILED, [F, U], "run"),
        (TriggerRule.ALL_FAILED, [F, S], "skip"),
        (TriggerRule.ALL_FAILED, [F, N], "wait"),
        (TriggerRule.ALL_DONE, [F, S, K], "run"),
        (TriggerRule.ALL_DONE, [F, N], "wait"),
        (TriggerRule.ONE_SUCCESS, [S, N], "run"),
        (TriggerRule.ONE_SUCCESS, [F, K], "upstream_failed"),
        (TriggerRule.ONE_SUCCESS, [K, K], "skip"),
        (TriggerRule.ONE_FAILED, [F, N], "run"),
        (TriggerRule.ONE_FAILED, [S, K], "skip"),
        (TriggerRule.NONE_FAILED, [S, K], "run"),
        (TriggerRule.NONE_FAILED, [S, U], "upstream_failed"),
        (TriggerRule.NONE_SKIPPED, [S, F], "run"),
        (TriggerRule.NONE_SKIPPED, [S, K], "skip"),
        (TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, [S, K], "run"),
        (TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, [K, K], "skip"),
        (TriggerRule.ALWAYS, [N], "run"),
    ],
)
def test_airflow_table(rule: TriggerRule, states: list[TaskState], verdict: str) -> None:
    assert evaluate(rule, UpstreamCounts.of(states)) == verdict


finished = st.sampled_from([S, F, K, U])
any_state = st.sampled_from([S, F, K, U, N, TaskState.NONE, TaskState.UP_FOR_RETRY])


@given(rule=st.sampled_from(list(TriggerRule)), states=st.lists(finished, min_size=1, max_size=6))
def test_all_finished_upstream_always_decides(rule: TriggerRule, states: list[TaskState]) -> None:
    """Once every upstream task has finished, no rule keeps a task waiting forever."""
    assert evaluate(rule, UpstreamCounts.of(states)) != "wait"


@given(rule=st.sampled_from(list(TriggerRule)), states=st.lists(any_state, min_size=1, max_size=6),
       extra=st.lists(finished, max_size=3))
def test_upstream_failed_is_final(rule: TriggerRule, states: list[TaskState],
                                  extra: list[TaskState]) -> None:
    """An upstream_failed verdict taken early holds whatever the unfinished upstream tasks do next.

    (An early ``skip`` is not final under all_success: a later failure upstream turns
    it into upstream_failed, as in Airflow; the kernel records the first verdict.)"""
    before = evaluate(rule, UpstreamCounts.of(states))
    if before == "upstream_failed":
        unfinished = [i for i, s in enumerate(states) if not s.finished]
        later = list(states)
        for i, s in zip(unfinished, extra + [S] * len(unfinished), strict=False):
            later[i] = s
        assert evaluate(rule, UpstreamCounts.of(later)) == before


def test_no_upstream_runs() -> None:
    for rule in TriggerRule:
        assert evaluate(rule, UpstreamCounts.of([])) == "run"
