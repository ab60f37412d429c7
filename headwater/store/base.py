"""The metadata-store port: records and the narrow interface every backend implements.

All datetimes in and out of a store are timezone-aware UTC. Writes that must be
atomic together (a task finishing, its try record, its results, its run's state)
travel in one :class:`UnitOfWork` and are committed in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from headwater.orchestration.spec import DagSpec
from headwater.orchestration.states import RunState, TaskState


@dataclass(slots=True)
class DagRecord:
    """A DAG as last parsed, with its scheduling flags."""

    dag_id: str
    fileloc: str
    spec: DagSpec
    source_hash: str
    version: int = 1
    is_paused: bool = False
    is_active: bool = True
    last_parsed_at: dt.datetime | None = None


@dataclass(slots=True)
class DagFileRecord:
    """What the last parse of one DAG file found (the parse cache)."""

    path: str
    mtime: float
    size: int
    source_hash: str
    dag_ids: list[str] = field(default_factory=list)
    last_parsed_at: dt.datetime | None = None
    parse_duration: float = 0.0


@dataclass(slots=True)
class ImportErrorRecord:
    """A DAG file that failed to load: syntax error, import error, cycle, duplicate id, timeout."""

    path: str
    message: str
    lineno: int | None = None
    kind: str = "import"
    created_at: dt.datetime | None = None


@dataclass(slots=True)
class DagRunRecord:
    """One run of a DAG for one logical date."""

    dag_id: str
    run_id: str
    logical_date: dt.datetime
    data_interval_start: dt.datetime
    data_interval_end: dt.datetime
    run_type: str
    state: RunState = RunState.QUEUED
    conf: dict[str, Any] = field(default_factory=dict)
    created_at: dt.datetime | None = None
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    dag_version: int = 1
    id: int | None = None


@dataclass(slots=True)
class TaskInstanceRecord:
    """One task in one DAG run.

    ``try_number`` is the number of the latest try (0 before the first);
    ``max_tries`` is how many tries are allowed in all (retries + 1, raised when
    the task instance is cleared). ``next_attempt_at`` is when a task waiting for a
    retry or a sensor reschedule may be queued again.
    """

    dag_id: str
    run_id: str
    task_id: str
    state: TaskState = TaskState.NONE
    try_number: int = 0
    max_tries: int = 1
    operator: str = ""
    pool: str = "default_pool"
    pool_slots: int = 1
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    duration: float | None = None
    queued_at: dt.datetime | None = None
    hostname: str | None = None
    pid: int | None = None
    next_attempt_at: dt.datetime | None = None
    sensor_started_at: dt.datetime | None = None
    reason: str = ""
    rendered: dict[str, str] = field(default_factory=dict)
    updated_at: dt.datetime | None = None


@dataclass(slots=True)
class TryRecord:
    """One try of one task instance, with its own log file."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    state: TaskState
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    duration: float | None = None
    reason: str = ""
    hostname: str | None = None
    pid: int | None = None
    log_path: str | None = None
    operator: str = ""


@dataclass(slots=True)
class XComRecord:
    """One result of a task instance. ``value`` is an XComValue dict (see executor.base)."""

    dag_id: str
    run_id: str
    task_id: str
    key: str
    value: dict[str, Any]
    created_at: dt.datetime | None = None


@dataclass(slots=True)
class PoolRecord:
    """A named limit on how many task slots may run at once."""

    name: str
    slots: int
    description: str = ""


@dataclass(slots=True)
class SchedulerJobRecord:
    """A scheduler process: who, where, and when it last said it was alive."""

    id: int
    hostname: str
    pid: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    state: str = "running"


@dataclass(slots=True)
class UnitOfWork:
    """Writes committed together, in one transaction.

    Task instances, tries, runs and xcoms are upserts by their natural keys;
    ``clear_xcoms`` deletes the results of the listed ``(dag_id, run_id, task_id)``.
    """

    task_instances: list[TaskInstanceRecord] = field(default_factory=list)
    tries: list[TryRecord] = field(default_factory=list)
    runs: list[DagRunRecord] = field(default_factory=list)
    xcoms: list[XComRecord] = field(default_factory=list)
    clear_xcoms: list[tuple[str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.task_instances or self.tries or self.runs or self.xcoms or self.clear_xcoms)


class MetadataStore(Protocol):
    """Everything headwater keeps about DAGs and their runs."""

    url: str

    # -- lifecycle
    def init(self) -> None:
        """Create or upgrade the schema to the newest migration. Idempotent."""
        ...

    def reset(self) -> None:
        """Drop every table and create the schema again."""
        ...

    def check(self) -> None:
        """Raise StoreError (with a hint) unless the schema is at the newest migration."""
        ...

    def close(self) -> None: ...

    # -- DAG files, DAGs and import errors
    def get_dag_files(self) -> dict[str, DagFileRecord]: ...

    def record_parse(self, file: DagFileRecord, specs: Sequence[DagSpec], errors: Sequence[ImportErrorRecord]) -> None:
        """Store one file's parse: upsert its DAGs (version + 1 when the source hash
        changed), replace its import errors, deactivate DAGs no longer in it."""
        ...

    def remove_dag_file(self, path: str) -> None:
        """The file is gone: deactivate its DAGs and drop its parse record and errors."""
        ...

    def list_import_errors(self) -> list[ImportErrorRecord]: ...

    def upsert_dag(self, spec: DagSpec) -> DagRecord:
        """Store a DAG not coming from the DAG folder (``dags test`` of a file, classic tasks)."""
        ...

    def get_dag(self, dag_id: str) -> DagRecord | None: ...

    def list_dags(self, *, include_inactive: bool = False) -> list[DagRecord]: ...

    def set_paused(self, dag_id: str, paused: bool) -> None: ...

    # -- DAG runs and task instances
    def create_run(self, run: DagRunRecord, task_instances: Iterable[TaskInstanceRecord]) -> DagRunRecord:
        """Insert a run and its task instances atomically; returns the run with ``id`` set.
        Raises StoreError if the run id or logical date already exists for the DAG."""
        ...

    def get_run(self, dag_id: str, run_id: str) -> DagRunRecord | None: ...

    def find_run(self, dag_id: str, logical_date: dt.datetime) -> DagRunRecord | None: ...

    def list_runs(
        self,
        dag_id: str | None = None,
        *,
        states: Iterable[RunState] | None = None,
        run_types: Iterable[str] | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        limit: int | None = 100,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[DagRunRecord]:
        """Runs ordered by logical date, newest first unless ``newest_first=False``; ``start``/``end``
        bound the logical date (inclusive)."""
        ...

    def latest_runs(
        self, dag_ids: Iterable[str], per_dag: int, *, run_types: Iterable[str] | None = None
    ) -> dict[str, list[DagRunRecord]]:
        """The newest ``per_dag`` runs of each DAG in ``dag_ids`` (of ``run_types`` if given), newest
        first, in one round trip: a DAG list page asks this once, not once per DAG. DAGs without
        runs map to an empty list."""
        ...

    def list_task_instances(
        self,
        dag_id: str | None = None,
        run_id: str | None = None,
        *,
        states: Iterable[TaskState] | None = None,
        task_ids: Iterable[str] | None = None,
    ) -> list[TaskInstanceRecord]: ...

    def get_task_instance(self, dag_id: str, run_id: str, task_id: str) -> TaskInstanceRecord | None: ...

    def commit(self, work: UnitOfWork) -> None:
        """Apply every write in ``work`` in one transaction."""
        ...

    def list_tries(self, dag_id: str, run_id: str, task_id: str) -> list[TryRecord]: ...

    def get_xcoms(
        self, dag_id: str, run_id: str, task_ids: Iterable[str] | None = None, key: str | None = None
    ) -> list[XComRecord]: ...

    # -- pools
    def list_pools(self) -> list[PoolRecord]: ...

    def get_pool(self, name: str) -> PoolRecord | None: ...

    def set_pool(self, name: str, slots: int, description: str = "") -> PoolRecord: ...

    def delete_pool(self, name: str) -> None: ...

    # -- scheduler jobs
    def start_scheduler_job(self, hostname: str, pid: int, now: dt.datetime) -> SchedulerJobRecord: ...

    def heartbeat(self, job_id: int, now: dt.datetime) -> None: ...

    def end_scheduler_job(self, job_id: int, now: dt.datetime) -> None: ...

    def list_scheduler_jobs(self, *, running_only: bool = True) -> list[SchedulerJobRecord]: ...
