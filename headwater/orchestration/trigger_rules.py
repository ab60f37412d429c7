"""Trigger rules: may a task run, given the states of its direct upstream tasks?

A pure function of counts, so it can be tested exhaustively. The verdicts follow
Airflow 2: a rule that can no longer be met turns into ``skip`` or
``upstream_failed``, which is how skips and failures propagate downstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from headwater.orchestration.states import TaskState, TriggerRule

Verdict = Literal["run", "wait", "skip", "upstream_failed"]


@dataclass(frozen=True, slots=True)
class UpstreamCounts:
    """How many direct upstream task instances are in each state."""

    total: int = 0
    success: int = 0
    skipped: int = 0
    failed: int = 0
    upstream_failed: int = 0
    removed: int = 0

    @property
    def done(self) -> int:
        return self.success + self.skipped + self.failed + self.upstream_failed + self.removed

    @classmethod
    def of(cls, states: Iterable[TaskState]) -> UpstreamCounts:
        counts = dict.fromkeys(("success", "skipped", "failed", "upstream_failed", "removed"), 0)
        total = 0
        for state in states:
            total += 1
            if state.value in counts:
                counts[state.value] += 1
        return cls(total=total, **counts)


def evaluate(rule: TriggerRule, up: UpstreamCounts) -> Verdict:
    """The verdict of ``rule`` for a task whose upstream tasks are counted in ``up``."""
    if up.total == 0 or rule is TriggerRule.ALWAYS:
        return "run"
    failed = up.failed + up.upstream_failed
    all_done = up.done == up.total
    match rule:
        case TriggerRule.ALL_SUCCESS:
            if failed:
                return "upstream_failed"
            if up.skipped:
                return "skip"
            return "run" if up.success + up.removed == up.total else "wait"
        case TriggerRule.ALL_FAILED:
            if up.success or up.skipped:
                return "skip"
            return "run" if all_done else "wait"
        case TriggerRule.ALL_DONE:
            return "run" if all_done else "wait"
        case TriggerRule.ONE_SUCCESS:
            if up.success:
                return "run"
            if not all_done:
                return "wait"
            return "skip" if up.skipped == up.total else "upstream_failed"
        case TriggerRule.ONE_FAILED:
            if failed:
                return "run"
            return "skip" if all_done else "wait"
        case TriggerRule.NONE_FAILED:
            if failed:
                return "upstream_failed"
            return "run" if all_done else "wait"
        case TriggerRule.NONE_SKIPPED:
            if up.skipped:
                return "skip"
            return "run" if all_done else "wait"
        case TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS:
            if failed:
                return "upstream_failed"
            if not all_done:
                return "wait"
            return "run" if up.success else "skip"
    raise AssertionError(f"unhandled trigger rule {rule}")  # pragma: no cover
