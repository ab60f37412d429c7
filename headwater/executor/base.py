"""The executor port: the scheduler submits workloads and reads back events.

A :class:`Workload` is plain data (JSON-serialisable) so it can cross a pipe to a
local worker process or travel to a Dask worker. The function that turns a
workload into a :class:`TaskEvent` is named by a dotted path (``runner``), so an
executor never imports DAG-authoring code itself.

Delivery protocol between scheduler and executor:

1. The scheduler commits the task instance as ``queued`` with its try number.
2. It calls :meth:`Executor.submit`.
3. The executor runs the workload at most once per submit and reports exactly one
   :class:`TaskEvent` for it through :meth:`Executor.events` — also when the
   worker crashed or the try timed out (``state="failed"`` with the reason).
4. The scheduler commits the event, then schedules downstream tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

EventState = Literal["running", "success", "failed", "skipped", "up_for_reschedule"]


@dataclass(frozen=True, slots=True, order=True)
class TaskKey:
    """Identifies one try of one task instance."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int

    def __str__(self) -> str:
        return f"{self.dag_id}.{self.task_id} run={self.run_id} try={self.try_number}"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The DAG run a workload belongs to. Datetimes are ISO 8601 strings in UTC."""

    run_id: str
    logical_date: str
    data_interval_start: str
    data_interval_end: str
    run_type: str = "manual"
    conf: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Workload:
    """Everything a worker needs to run one try of one task, as plain data.

    ``kind`` is ``"dag"`` (import ``fileloc``, a DAG file, and find ``dag_id``) or
    ``"classic"`` (``fileloc`` is ``"module:Class"`` and ``classic_params`` its
    parameters, for Luigi-style tasks).

    ``inputs`` holds upstream results needed by TaskFlow arguments, keyed by
    ``"task_id"`` then XCom key, each value an :class:`XComValue` dict.
    """

    key: TaskKey
    fileloc: str
    run: RunInfo
    log_path: str
    artifact_dir: str
    kind: str = "dag"
    max_tries: int = 1
    timeout: float | None = None
    force: bool = False
    inputs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    classic_params: dict[str, str] = field(default_factory=dict)
    db_url: str = ""
    sensor_started_at: str | None = None
    xcom_inline_limit: int = 64 * 1024

    def to_json(self) -> str:
        raw = _shallow(self)
        raw["key"] = _shallow(self.key)
        raw["run"] = _shallow(self.run)
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> Workload:
        raw = json.loads(text)
        raw["key"] = TaskKey(**raw["key"])
        raw["run"] = RunInfo(**raw["run"])
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """What happened to one workload.

    ``state`` is ``running`` when the worker has started the try (``pid`` set), and
    then one of the terminal states (``success``, ``failed``, ``skipped``) or
    ``up_for_reschedule`` (a sensor in reschedule mode; ``reschedule_at`` is a UNIX
    time). ``reason`` is a one-line exit reason a person can read ("already
    complete", "ValueError: bad row 3", "timed out after 5s", "worker died:
    SIGSEGV"). ``xcom`` maps keys to :class:`XComValue` dicts. ``skip`` lists the
    downstream task ids a branch or short-circuit decided to skip.
    ``retryable`` is False for failures that must not use the remaining retries.
    """

    key: TaskKey
    state: EventState
    reason: str = ""
    start: float | None = None
    end: float | None = None
    pid: int | None = None
    hostname: str | None = None
    xcom: dict[str, dict[str, Any]] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    reschedule_at: float | None = None
    rendered: dict[str, str] = field(default_factory=dict)
    retryable: bool = True

    def to_json(self) -> str:
        raw = _shallow(self)
        raw["key"] = _shallow(self.key)
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> TaskEvent:
        raw = json.loads(text)
        raw["key"] = TaskKey(**raw["key"])
        raw["skip"] = tuple(raw.get("skip") or ())
        return cls(**raw)


def _shallow(obj: Any) -> dict[str, Any]:
    """Fields of a dataclass as a dict, without ``asdict``'s deep copy (it was ~0.15 ms per
    event, paid on every task); nested values here are plain JSON data already."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


# An XComValue is a dict with one of two shapes:
#   {"json": <JSON value>}                       small values, stored in the DB
#   {"ref": "<path>", "format": "json"|"pickle", "size": <bytes>}
#                                                large or non-JSON values, stored as a
#                                                file under the run's artifact folder


class Executor(Protocol):
    """Runs workloads somewhere and reports one terminal event per workload."""

    parallelism: int

    def start(self) -> None:
        """Acquire resources (start worker processes). Idempotent."""
        ...

    def submit(self, workload: Workload) -> None:
        """Start running ``workload``; must not block on the task itself."""
        ...

    def events(self, timeout: float | None = 0.0) -> list[TaskEvent]:
        """Return the events produced since the last call.

        Waits up to ``timeout`` seconds for at least one event (``None``: wait
        until one arrives while work is running; return at once when idle).
        """
        ...

    def free_slots(self) -> int:
        """How many more workloads can be submitted right now."""
        ...

    def running_keys(self) -> set[TaskKey]:
        """Keys of workloads submitted and not yet reported as finished."""
        ...

    def kill(self, key: TaskKey, reason: str = "killed") -> None:
        """Stop one running workload; a failed event with ``reason`` follows."""
        ...

    def shutdown(self) -> None:
        """Stop all workers. Running workloads are killed and reported failed."""
        ...
