"""The SQL metadata store: SQLite by default, PostgreSQL when several hosts share it.

One :class:`SqlStore` per process; it is safe for several processes (scheduler,
workers, CLI commands) to use the same SQLite file at once: the file is in WAL mode
(readers never block the writer), and every write transaction starts with
``BEGIN IMMEDIATE``, so a second writer waits (up to 30 s) for the write lock
instead of failing with "database is locked" when it upgrades a read to a write.

Errors from SQLAlchemy and the drivers are translated here, at the edge, into
:class:`~headwater.errors.StoreError` naming the database (password masked).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, create_engine, delete, func, insert, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError

from headwater.clock import ensure_utc, utcnow
from headwater.errors import DagNotFoundError, StoreError, UserError
from headwater.orchestration.spec import DEFAULT_POOL, DagSpec
from headwater.orchestration.states import RunState, TaskState
from headwater.store import schema as s
from headwater.store.base import (
    DagFileRecord,
    DagRecord,
    DagRunRecord,
    ImportErrorRecord,
    PoolRecord,
    SchedulerJobRecord,
    TaskInstanceRecord,
    TryRecord,
    UnitOfWork,
    XComRecord,
)
from headwater.store.engine import (
    WRITE,
    alembic_config,
    dispose_in_child,
    mask_url,
    normalize_url,
    sqlite_engine,
)
from headwater.store.rows import (
    TRY_COLS,
    dag_record,
    duplicate_run,
    new_id,
    run_record,
    run_row,
    ti_record,
    ti_row,
)

if TYPE_CHECKING:
    pass

__all__ = ["SqlStore", "alembic_config", "mask_url", "normalize_url", "open_store"]

# Any constant works; it only has to be the same for every headwater process.
_PG_MIGRATION_LOCK = 0x68656164  # "head"



def open_store(url: str, *, create: bool = False) -> SqlStore:
    """Open the metadata store at ``url``; with ``create=True`` run :meth:`SqlStore.init`
    when the schema is missing. Nothing connects to the database until first use
    unless ``create`` is set."""
    store = SqlStore(url)
    if create and store.schema_revision() is None:
        store.init()
    return store


class SqlStore:
    """The :class:`~headwater.store.base.MetadataStore` on SQLite or PostgreSQL.

    ``url`` is a SQLAlchemy URL (``sqlite:///path/headwater.db``,
    ``postgresql://user@host/db``); ``connect_args`` go to the driver as is.
    """

    def __init__(self, url: str, *, connect_args: Mapping[str, Any] | None = None) -> None:
        self.url = normalize_url(url)
        self.safe_url = mask_url(self.url)
        try:
            parsed = make_url(self.url)
            backend = parsed.get_backend_name()
            if backend == "sqlite":
                engine = sqlite_engine(self.url, dict(connect_args or {}))
            elif backend == "postgresql":
                engine = create_engine(parsed, connect_args=dict(connect_args or {}), pool_pre_ping=True)
            else:
                raise StoreError(
                    f"unsupported metadata database {self.safe_url!r}",
                    hint="use a sqlite:///path/to/headwater.db or postgresql://user@host/db URL",
                )
        except ArgumentError as exc:
            raise StoreError(
                f"invalid database URL {self.safe_url!r}: {exc}",
                hint="use a sqlite:///path/to/headwater.db or postgresql://user@host/db URL",
            ) from exc
        except (ImportError, NoSuchModuleError) as exc:
            raise StoreError(
                f"no database driver for {self.safe_url!r}: {exc}",
                hint="for PostgreSQL, pip install 'headwater[postgres]'",
            ) from exc
        self._engine: Engine = engine
        self._write_engine = engine.execution_options(**{WRITE: True})
        self._dialect = engine.dialect.name
        self._upserts: dict[str, Any] = {}
        # A forked child must not reuse the parent's connections: give it a fresh pool.
        os.register_at_fork(after_in_child=dispose_in_child(weakref.ref(engine)))

    def __repr__(self) -> str:
        return f"SqlStore({self.safe_url!r})"

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for migrations, tools and tests)."""
        return self._engine

    # -- lifecycle

    def init(self) -> None:
        """Create or upgrade the schema to the newest migration. Idempotent."""
        from alembic import command

        with self._guard("create or upgrade the schema"), self._write_engine.connect() as conn:
            raw = conn.connection.dbapi_connection if self._dialect == "sqlite" else None
            if raw is not None:
                # SQLite batch migrations copy and drop tables; with foreign keys on, dropping
                # a parent table would cascade-delete its children. The pragma only takes
                # effect outside a transaction.
                raw.execute("PRAGMA foreign_keys = OFF")
            try:
                with conn.begin():
                    if self._dialect == "postgresql":
                        # Two processes running `db init` at once must not both create tables.
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                    command.upgrade(alembic_config(conn), "head")
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys = ON")

    def reset(self) -> None:
        """Drop every table and create the schema again."""
        with self._begin("drop the schema", write=True) as conn:
            s.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        self.init()

    def schema_revision(self) -> str | None:
        """The alembic revision the database is at, or None when it has no schema."""
        with self._begin("read the schema revision") as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return None if revision is None else str(revision)

    def check(self) -> None:
        """Raise StoreError (with a hint) unless the schema is at the newest migration."""
        revision = self.schema_revision()
        if revision == s.SCHEMA_REVISION:
            return
        if revision is None:
            raise StoreError(
                f"the metadata database {self.safe_url} is not initialised", hint="run `headwater db init`"
            )
        if revision in s.SCHEMA_REVISIONS:
            raise StoreError(
                f"the metadata database {self.safe_url} is at schema revision {revision}; "
                f"this headwater needs {s.SCHEMA_REVISION}",
                hint="run `headwater db upgrade`",
            )
        raise StoreError(
            f"the metadata database {self.safe_url} is at schema revision {revision}, unknown to this "
            f"headwater (made by a newer version?)",
            hint="upgrade headwater, or point HEADWATER_DB_URL at another database",
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    # -- DAG files, DAGs and import errors

    def get_dag_files(self) -> dict[str, DagFileRecord]:
        """Every parsed DAG file by path."""
        with self._begin("read the DAG files") as conn:
            rows = conn.execute(select(s.dag_files)).mappings().all()
        return {r["path"]: DagFileRecord(**r) for r in rows}

    def record_parse(self, file: DagFileRecord, specs: Sequence[DagSpec], errors: Sequence[ImportErrorRecord]) -> None:
        """Store one file's parse: upsert its DAGs (version + 1 when the source hash
        changed), replace its import errors, deactivate DAGs no longer in it.

        DAGs and errors are stored under ``file.path``; a DAG's source hash is its
        spec's, or the file's when the spec has none; the file record's ``dag_ids``
        are the ids of ``specs``. A parse that failed as a whole (errors and no
        specs: syntax error, timeout) says nothing about which DAGs the file defines,
        so its DAGs are left as they were (as Airflow keeps a broken file's DAGs)."""
        now = utcnow()
        parsed_at = file.last_parsed_at or now
        ids = [spec.dag_id for spec in specs]
        file_row = {f.name: getattr(file, f.name) for f in dataclasses.fields(file)}
        file_row["dag_ids"] = ids
        file_row["last_parsed_at"] = parsed_at
        with self._begin(f"record the parse of {file.path}", write=True) as conn:
            conn.execute(self._upsert(s.dag_files, ("path",)), file_row)
            if specs:
                self._write_dags(conn, specs, file.path, file.source_hash, parsed_at)
            if specs or not errors:
                # DAGs this file defined before but not any more.
                conn.execute(
                    update(s.dags)
                    .where(s.dags.c.fileloc == file.path, s.dags.c.dag_id.not_in(ids), s.dags.c.is_active)
                    .values(is_active=False)
                )
            conn.execute(delete(s.import_errors).where(s.import_errors.c.path == file.path))
            if errors:
                conn.execute(
                    insert(s.import_errors),
                    [
                        {
                            "path": file.path,
                            "message": e.message,
                            "lineno": e.lineno,
                            "kind": e.kind,
                            "created_at": e.created_at or parsed_at,
                        }
                        for e in errors
                    ],
                )

    def remove_dag_file(self, path: str) -> None:
        """The file is gone: deactivate its DAGs and drop its parse record and errors."""
        with self._begin(f"remove the DAG file {path}", write=True) as conn:
            conn.execute(update(s.dags).where(s.dags.c.fileloc == path).values(is_active=False))
            conn.execute(delete(s.dag_files).where(s.dag_files.c.path == path))
            conn.execute(delete(s.import_errors).where(s.import_errors.c.path == path))

    def list_import_errors(self) -> list[ImportErrorRecord]:
        """Every import error, by path."""
        t = s.import_errors
        query = select(t.c.path, t.c.message, t.c.lineno, t.c.kind, t.c.created_at).order_by(t.c.path, t.c.id)
        with self._begin("read the import errors") as conn:
            return [ImportErrorRecord(**r) for r in conn.execute(query).mappings()]

    def upsert_dag(self, spec: DagSpec) -> DagRecord:
        """Store a DAG not coming from the DAG folder (``dags test`` of a file, classic tasks)."""
        with self._begin(f"store the DAG {spec.dag_id}", write=True) as conn:
            self._write_dags(conn, [spec], spec.fileloc, spec.source_hash, utcnow())
            row = conn.execute(select(s.dags).where(s.dags.c.dag_id == spec.dag_id)).mappings().one()
        return dag_record(row)

    def get_dag(self, dag_id: str) -> DagRecord | None:
        """The DAG with this id, active or not."""
        with self._begin(f"read the DAG {dag_id}") as conn:
            row = conn.execute(select(s.dags).where(s.dags.c.dag_id == dag_id)).mappings().first()
        return None if row is None else dag_record(row)

    def list_dags(self, *, include_inactive: bool = False) -> list[DagRecord]:
        """DAGs by id; only those still in the DAG folder unless ``include_inactive``."""
        query = select(s.dags).order_by(s.dags.c.dag_id)
        if not include_inactive:
            query = query.where(s.dags.c.is_active)
        with self._begin("list the DAGs") as conn:
            return [dag_record(r) for r in conn.execute(query).mappings()]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG; raises DagNotFoundError for an unknown id."""
        with self._begin(f"pause the DAG {dag_id}", write=True) as conn:
            result = conn.execute(update(s.dags).where(s.dags.c.dag_id == dag_id).values(is_paused=paused))
            if result.rowcount == 0:
                raise DagNotFoundError(
                    f"no DAG with id {dag_id!r} is known", hint="run `headwater dags list` to see the DAGs"
                )

    # -- DAG runs and task instances

    def create_run(self, run: DagRunRecord, task_instances: Iterable[TaskInstanceRecord]) -> DagRunRecord:
        """Insert a run and its task instances atomically; returns the run with ``id`` set.
        Raises StoreError if the run id or logical date already exists for the DAG."""
        now = utcnow()
        row = run_row(run, now)
        ti_rows = [ti_row(ti, now) for ti in task_instances]
        r = s.dag_runs
        with self._begin(f"create the run {run.run_id} of DAG {run.dag_id}", write=True) as conn:
            clash = conn.execute(
                select(r.c.run_id, r.c.logical_date).where(
                    r.c.dag_id == run.dag_id,
                    (r.c.run_id == run.run_id) | (r.c.logical_date == row["logical_date"]),
                )
            ).first()
            if clash is not None:
                raise duplicate_run(run, clash.run_id, clash.logical_date)
            try:
                result = conn.execute(insert(r), row)
            except IntegrityError as exc:  # another process created it since the check
                raise duplicate_run(run, run.run_id, row["logical_date"]) from exc
            if ti_rows:
                conn.execute(insert(s.task_instances), ti_rows)
        return dataclasses.replace(run, id=new_id(result), created_at=row["created_at"], state=RunState(row["state"]))

    def get_run(self, dag_id: str, run_id: str) -> DagRunRecord | None:
        """The run with this run id, or None."""
        query = select(s.dag_runs).where(s.dag_runs.c.dag_id == dag_id, s.dag_runs.c.run_id == run_id)
        with self._begin(f"read the run {run_id} of DAG {dag_id}") as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else run_record(row)

    def find_run(self, dag_id: str, logical_date: dt.datetime) -> DagRunRecord | None:
        """The run of the DAG for this logical date, or None."""
        r = s.dag_runs
        query = select(r).where(r.c.dag_id == dag_id, r.c.logical_date == ensure_utc(logical_date))
        with self._begin(f"find the run of DAG {dag_id} for {logical_date.isoformat()}") as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else run_record(row)

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
        r = s.dag_runs
        query = select(r)
        if dag_id is not None:
            query = query.where(r.c.dag_id == dag_id)
        if states is not None:
            query = query.where(r.c.state.in_([str(x) for x in states]))
        if run_types is not None:
            query = query.where(r.c.run_type.in_([str(x) for x in run_types]))
        if start is not None:
            query = query.where(r.c.logical_date >= ensure_utc(start))
        if end is not None:
            query = query.where(r.c.logical_date <= ensure_utc(end))
        if newest_first:
            query = query.order_by(r.c.logical_date.desc(), r.c.id.desc())
        else:
            query = query.order_by(r.c.logical_date, r.c.id)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self._begin("list runs") as conn:
            return [run_record(row) for row in conn.execute(query).mappings()]

    def latest_runs(
        self, dag_ids: Iterable[str], per_dag: int, *, run_types: Iterable[str] | None = None
    ) -> dict[str, list[DagRunRecord]]:
        """The newest ``per_dag`` runs of each DAG in ``dag_ids``, newest first, in one query."""
        wanted = list(dict.fromkeys(dag_ids))
        out: dict[str, list[DagRunRecord]] = {d: [] for d in wanted}
        if not wanted or per_dag <= 0:
            return out
        r = s.dag_runs
        # ROW_NUMBER() over each DAG's runs (SQLite >= 3.25, PostgreSQL): one query for a page of
        # DAGs instead of one per DAG; the (dag_id, logical_date) index serves the window's order.
        rank = func.row_number().over(partition_by=r.c.dag_id,
                                      order_by=(r.c.logical_date.desc(), r.c.id.desc())).label("rank")
        inner = select(r, rank).where(r.c.dag_id.in_(wanted))
        if run_types is not None:
            inner = inner.where(r.c.run_type.in_([str(x) for x in run_types]))
        ranked = inner.subquery()
        query = (select(*[ranked.c[c.name] for c in r.columns]).where(ranked.c.rank <= per_dag)
                 .order_by(ranked.c.dag_id, ranked.c.rank))
        with self._begin("list the latest runs") as conn:
            for row in conn.execute(query).mappings():
                out[row["dag_id"]].append(run_record(row))
        return out

    def list_task_instances(
        self,
        dag_id: str | None = None,
        run_id: str | None = None,
        *,
        states: Iterable[TaskState] | None = None,
        task_ids: Iterable[str] | None = None,
    ) -> list[TaskInstanceRecord]:
        """Task instances ordered by DAG, run and task id."""
        t = s.task_instances
        query = select(t).order_by(t.c.dag_id, t.c.run_id, t.c.task_id)
        if dag_id is not None:
            query = query.where(t.c.dag_id == dag_id)
        if run_id is not None:
            query = query.where(t.c.run_id == run_id)
        if states is not None:
            query = query.where(t.c.state.in_([str(x) for x in states]))
        if task_ids is not None:
            query = query.where(t.c.task_id.in_(list(task_ids)))
        with self._begin("list task instances") as conn:
            return [ti_record(row) for row in conn.execute(query).mappings()]

    def get_task_instance(self, dag_id: str, run_id: str, task_id: str) -> TaskInstanceRecord | None:
        """One task instance, or None."""
        t = s.task_instances
        query = select(t).where(t.c.dag_id == dag_id, t.c.run_id == run_id, t.c.task_id == task_id)
        with self._begin(f"read the task instance {dag_id}.{task_id} of run {run_id}") as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else ti_record(row)

    def commit(self, work: UnitOfWork) -> None:
        """Apply every write in ``work`` in one transaction.

        Step 1. Upsert runs (task instances refer to them).
        Step 2. Upsert task instances; ``updated_at`` defaults to now.
        Step 3. Upsert tries.
        Step 4. Delete the cleared results, then upsert the new ones, so one unit can
        replace a task's results.
        One statement per record kind (executemany): the scheduler commits every step.
        """
        if not work:
            return
        now = utcnow()
        with self._begin("commit task updates", write=True) as conn:
            # Step 1.
            if work.runs:
                conn.execute(
                    self._upsert(s.dag_runs, ("dag_id", "run_id"), keep=("created_at",)),
                    [run_row(r, now) for r in work.runs],
                )
            # Step 2.
            if work.task_instances:
                conn.execute(
                    self._upsert(s.task_instances, ("dag_id", "run_id", "task_id")),
                    [ti_row(ti, now) for ti in work.task_instances],
                )
            # Step 3.
            if work.tries:
                conn.execute(
                    self._upsert(s.task_tries, ("dag_id", "run_id", "task_id", "try_number")),
                    [{c: getattr(t, c) for c in TRY_COLS} | {"state": str(t.state)} for t in work.tries],
                )
            # Step 4.
            if work.clear_xcoms:
                x = s.xcoms
                for dag_id, run_id, task_id in work.clear_xcoms:
                    conn.execute(delete(x).where(x.c.dag_id == dag_id, x.c.run_id == run_id, x.c.task_id == task_id))
            if work.xcoms:
                conn.execute(
                    self._upsert(s.xcoms, ("dag_id", "run_id", "task_id", "key")),
                    [
                        {
                            "dag_id": x.dag_id,
                            "run_id": x.run_id,
                            "task_id": x.task_id,
                            "key": x.key,
                            "value": x.value,
                            "created_at": x.created_at or now,
                        }
                        for x in work.xcoms
                    ],
                )

    def list_tries(self, dag_id: str, run_id: str, task_id: str) -> list[TryRecord]:
        """The tries of one task instance, oldest first."""
        t = s.task_tries
        query = (
            select(t).where(t.c.dag_id == dag_id, t.c.run_id == run_id, t.c.task_id == task_id).order_by(t.c.try_number)
        )
        with self._begin(f"list the tries of {dag_id}.{task_id} in run {run_id}") as conn:
            rows = conn.execute(query).mappings().all()
        return [TryRecord(**(dict(r) | {"state": TaskState(r["state"])})) for r in rows]

    def get_xcoms(
        self, dag_id: str, run_id: str, task_ids: Iterable[str] | None = None, key: str | None = None
    ) -> list[XComRecord]:
        """Results of a run, ordered by task id and key."""
        x = s.xcoms
        query = select(x).where(x.c.dag_id == dag_id, x.c.run_id == run_id).order_by(x.c.task_id, x.c.key)
        if task_ids is not None:
            query = query.where(x.c.task_id.in_(list(task_ids)))
        if key is not None:
            query = query.where(x.c.key == key)
        with self._begin(f"read the results of run {run_id} of DAG {dag_id}") as conn:
            return [XComRecord(**r) for r in conn.execute(query).mappings()]

    # -- pools

    def list_pools(self) -> list[PoolRecord]:
        """Every pool, by name."""
        query = select(s.pools).order_by(s.pools.c.name)
        with self._begin("list pools") as conn:
            return [PoolRecord(**r) for r in conn.execute(query).mappings()]

    def get_pool(self, name: str) -> PoolRecord | None:
        """The pool with this name, or None."""
        with self._begin(f"read the pool {name}") as conn:
            row = conn.execute(select(s.pools).where(s.pools.c.name == name)).mappings().first()
        return None if row is None else PoolRecord(**row)

    def set_pool(self, name: str, slots: int, description: str = "") -> PoolRecord:
        """Create or update a pool."""
        record = PoolRecord(name=name, slots=slots, description=description)
        with self._begin(f"set the pool {name}", write=True) as conn:
            conn.execute(self._upsert(s.pools, ("name",)), dataclasses.asdict(record))
        return record

    def delete_pool(self, name: str) -> None:
        """Delete a pool; the default pool cannot be deleted, and the pool must exist."""
        if name == DEFAULT_POOL:
            raise UserError(
                f"the pool {name!r} cannot be deleted",
                hint=f"change its size instead: headwater pools set {name} <slots>",
            )
        with self._begin(f"delete the pool {name}", write=True) as conn:
            if conn.execute(delete(s.pools).where(s.pools.c.name == name)).rowcount == 0:
                raise UserError(f"no pool named {name!r}", hint="run `headwater pools list` to see the pools")

    # -- scheduler jobs

    def start_scheduler_job(self, hostname: str, pid: int, now: dt.datetime) -> SchedulerJobRecord:
        """Record a scheduler starting; returns it with its id."""
        now = ensure_utc(now)
        row = {"hostname": hostname, "pid": pid, "started_at": now, "heartbeat_at": now, "state": "running"}
        with self._begin("record a scheduler start", write=True) as conn:
            job_id = new_id(conn.execute(insert(s.scheduler_jobs), row))
        return SchedulerJobRecord(id=job_id, hostname=hostname, pid=pid, started_at=now, heartbeat_at=now)

    def heartbeat(self, job_id: int, now: dt.datetime) -> None:
        """The scheduler ``job_id`` is alive at ``now``."""
        j = s.scheduler_jobs
        with self._begin("record a scheduler heartbeat", write=True) as conn:
            conn.execute(update(j).where(j.c.id == job_id).values(heartbeat_at=now))

    def end_scheduler_job(self, job_id: int, now: dt.datetime) -> None:
        """The scheduler ``job_id`` stopped at ``now``: state becomes ``ended``."""
        j = s.scheduler_jobs
        with self._begin("record a scheduler stop", write=True) as conn:
            conn.execute(update(j).where(j.c.id == job_id).values(heartbeat_at=now, state="ended"))

    def list_scheduler_jobs(self, *, running_only: bool = True) -> list[SchedulerJobRecord]:
        """Scheduler jobs by id; only those not ended unless ``running_only`` is False."""
        j = s.scheduler_jobs
        query = select(j).order_by(j.c.id)
        if running_only:
            query = query.where(j.c.state == "running")
        with self._begin("list schedulers") as conn:
            return [SchedulerJobRecord(**r) for r in conn.execute(query).mappings()]

    # -- helpers

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Translate SQLAlchemy errors into StoreError naming the database."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise self._error(what, exc) from exc

    @contextmanager
    def _begin(self, what: str, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; ``write`` takes SQLite's write lock up front (BEGIN IMMEDIATE)."""
        engine = self._write_engine if write else self._engine
        try:
            with engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: SQLAlchemyError) -> StoreError:
        orig = getattr(exc, "orig", None) or exc
        detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        low = str(orig).lower()
        hint: str | None = None
        if "no such table" in low or ("relation" in low and "does not exist" in low):
            hint = "run `headwater db init`"
        elif "locked" in low:
            hint = "another process held the database's write lock for too long; try again"
        elif isinstance(exc, IntegrityError):
            hint = "a record refers to a run or task instance that does not exist, or repeats a unique key"
        elif isinstance(exc, OperationalError):
            hint = "check that the database is reachable and writable"
        return StoreError(f"could not {what}: {detail} (database {self.safe_url})", hint=hint)

    def _upsert(self, table: Table, key: Sequence[str], *, keep: Sequence[str] = ()) -> Any:
        """``INSERT ... ON CONFLICT (key) DO UPDATE`` for this backend, built once per table.

        Columns in ``keep`` keep their stored value on update when it is set."""
        stmt = self._upserts.get(table.name)
        if stmt is not None:
            return stmt
        base: Any
        if self._dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            base = postgresql.insert(table)
        else:
            from sqlalchemy.dialects import sqlite

            base = sqlite.insert(table)
        excluded = base.excluded
        # The surrogate "id" of a run never changes; the natural key identifies the row.
        set_: dict[str, Any] = {c.name: excluded[c.name] for c in table.c if c.name not in key and c.name != "id"}
        for name in keep:
            set_[name] = func.coalesce(table.c[name], excluded[name])
        if table is s.dags:
            set_.pop("is_paused")  # pausing belongs to the user, not to the parser
        stmt = base.on_conflict_do_update(index_elements=[table.c[k] for k in key], set_=set_)
        self._upserts[table.name] = stmt
        return stmt

    def _write_dags(
        self, conn: Connection, specs: Sequence[DagSpec], fileloc: str, file_hash: str, parsed_at: dt.datetime
    ) -> None:
        ids = [spec.dag_id for spec in specs]
        d = s.dags
        known = {
            r.dag_id: (r.source_hash, r.version)
            for r in conn.execute(select(d.c.dag_id, d.c.source_hash, d.c.version).where(d.c.dag_id.in_(ids)))
        }
        rows = []
        for spec in specs:
            source_hash = spec.source_hash or file_hash
            old_hash, old_version = known.get(spec.dag_id, (None, 0))
            rows.append(
                {
                    "dag_id": spec.dag_id,
                    "fileloc": fileloc,
                    "spec": spec.to_json(),
                    "source_hash": source_hash,
                    "version": old_version if old_hash == source_hash else old_version + 1,
                    "is_paused": spec.is_paused_upon_creation,
                    "is_active": True,
                    "last_parsed_at": parsed_at,
                    "owner": spec.owner,
                    "schedule": spec.schedule,
                    "description": spec.description,
                    "tags": list(spec.tags),
                }
            )
        conn.execute(self._upsert(d, ("dag_id",)), rows)
