"""Plain-data descriptions of DAGs and tasks: what the scheduler needs, and no user code.

A DAG file is imported in a parse subprocess; what comes out is a :class:`DagSpec`,
stored as JSON in the metadata DB. The scheduler and the kernel work only on specs,
so a broken or slow DAG file can never stop them. Workers import the file itself to
run a task.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from headwater.orchestration.states import TriggerRule

DEFAULT_POOL = "default_pool"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """Scheduling facts of one task. Durations are in seconds."""

    task_id: str
    operator: str = "EmptyOperator"
    upstream: tuple[str, ...] = ()
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retries: int = 0
    retry_delay: float = 300.0
    retry_exponential_backoff: bool = False
    max_retry_delay: float | None = None
    execution_timeout: float | None = None
    pool: str = DEFAULT_POOL
    pool_slots: int = 1
    depends_on_past: bool = False
    owner: str = "headwater"
    is_sensor: bool = False
    sensor_mode: str = "poke"
    poke_interval: float = 60.0
    sensor_timeout: float = 7 * 24 * 3600.0
    soft_fail: bool = False
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    has_outputs: bool = False
    is_empty: bool = False
    doc: str | None = None
    # Task groups holding the task, outermost first (``("etl", "etl.extract")``); empty: none.
    groups: tuple[str, ...] = ()

    def retry_wait(self, try_number: int) -> float:
        """Seconds to wait before the next try, after try ``try_number`` (1-based) failed.

        With exponential backoff the delay doubles each try (Airflow's rule), capped
        by ``max_retry_delay`` when set.
        """
        delay = self.retry_delay
        if self.retry_exponential_backoff:
            delay = self.retry_delay * (2 ** max(0, try_number - 1))
        if self.max_retry_delay is not None:
            delay = min(delay, self.max_retry_delay)
        return max(0.0, delay)


@dataclass(frozen=True, slots=True)
class DagSpec:
    """Scheduling facts of one DAG.

    ``schedule`` is normalised: ``None``, ``"@once"``, a cron expression (presets
    like ``@daily`` expanded), or ``"every:<seconds>"`` for a ``timedelta``.
    """

    dag_id: str
    tasks: dict[str, TaskSpec]
    fileloc: str = ""
    description: str | None = None
    schedule: str | None = None
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    catchup: bool = False
    max_active_runs: int = 16
    max_active_tasks: int = 16
    tags: tuple[str, ...] = ()
    owner: str = "headwater"
    # Default value of each param (``"***"`` for a secret one; ``None`` when it has none).
    params: dict[str, Any] = field(default_factory=dict)
    # Per param: {"schema": JSON Schema keywords, "description", "secret", "required"}
    # (see orchestration/params.py); what a trigger form is drawn from and checked with.
    params_schema: dict[str, dict[str, Any]] = field(default_factory=dict)
    # group_id -> {"tooltip", "parent" (group_id or None)}; tasks name theirs in TaskSpec.groups.
    task_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    is_paused_upon_creation: bool = False
    source_hash: str = ""
    dagrun_timeout: float | None = None

    def downstream(self) -> dict[str, list[str]]:
        """Map each task id to the ids of its direct downstream tasks."""
        out: dict[str, list[str]] = {tid: [] for tid in self.tasks}
        for tid, t in self.tasks.items():
            for up in t.upstream:
                out[up].append(tid)
        return out

    def with_downstream(self, task_ids: Iterable[str]) -> set[str]:
        """``task_ids`` and every task downstream of them, transitively (what "clear with downstream" clears)."""
        selected = set(task_ids)
        down = self.downstream()
        stack = list(selected)
        while stack:
            for d in down[stack.pop()]:
                if d not in selected:
                    selected.add(d)
                    stack.append(d)
        return selected

    def topological_order(self) -> list[str]:
        """Task ids with every task after all of its upstream tasks (stable by definition order)."""
        indeg = {tid: len(t.upstream) for tid, t in self.tasks.items()}
        down = self.downstream()
        ready = [tid for tid, n in indeg.items() if n == 0]
        order: list[str] = []
        while ready:
            tid = ready.pop(0)
            order.append(tid)
            for d in down[tid]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    ready.append(d)
        if len(order) != len(self.tasks):
            raise ValueError(f"DAG {self.dag_id!r} has a cycle")
        return order

    def to_json(self) -> str:
        """Serialise to a JSON string (datetimes as ISO 8601)."""
        return json.dumps(_to_plain(asdict(self)), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DagSpec:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        tasks = {tid: _task_from_plain(t) for tid, t in raw.pop("tasks").items()}
        for key in ("start_date", "end_date"):
            raw[key] = _parse_dt(raw.get(key))
        raw["tags"] = tuple(raw.get("tags") or ())
        known = {f.name for f in fields(cls)}
        return cls(tasks=tasks, **{k: v for k, v in raw.items() if k in known})


_TASK_FIELDS = frozenset(f.name for f in fields(TaskSpec))


def _task_from_plain(raw: dict[str, Any]) -> TaskSpec:
    raw = dict(raw)
    raw["upstream"] = tuple(raw.get("upstream") or ())
    raw["groups"] = tuple(raw.get("groups") or ())
    raw["trigger_rule"] = TriggerRule(raw.get("trigger_rule", "all_success"))
    for key in ("start_date", "end_date"):
        raw[key] = _parse_dt(raw.get(key))
    return TaskSpec(**{k: v for k, v in raw.items() if k in _TASK_FIELDS})


def _parse_dt(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
