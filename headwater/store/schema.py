"""The metadata database schema, as SQLAlchemy Core tables.

Core, not ORM: the CLI imports this on every start and the ORM costs too much
import time. Types stay portable between SQLite and PostgreSQL: datetimes are
stored as naive UTC (SQLite has no time zones) and returned aware; JSON is stored
as text. The migrations in ``headwater/store/migrations`` create exactly these
tables; a test checks that they agree.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

#: Alembic revisions, oldest first. ``check()`` reads ``alembic_version`` against
#: these without importing alembic (which costs ~270 ms of start-up time).
SCHEMA_REVISIONS: tuple[str, ...] = ("0001", "0002")

#: The newest migration: what ``check()`` expects to find in the database.
SCHEMA_REVISION = SCHEMA_REVISIONS[-1]

#: Longest DAG, run, task and pool id (Airflow's ``ID_LEN``).
ID_LEN = 250

_UTC = dt.UTC


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A datetime stored as naive UTC and returned timezone-aware in UTC.

    Naive values given to the database are taken as UTC (as :func:`headwater.clock.ensure_utc`).
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(_UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=_UTC)


class JSONText(TypeDecorator[Any]):
    """A JSON value stored as text, portable to every backend."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, sort_keys=True)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(value)


# Named constraints keep SQLite batch migrations (which copy tables) predictable.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

dags = Table(
    "dags",
    metadata,
    Column("dag_id", String(ID_LEN), primary_key=True),
    Column("fileloc", Text, nullable=False),
    Column("spec", Text, nullable=False),  # DagSpec.to_json()
    Column("source_hash", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("is_paused", Boolean, nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("last_parsed_at", UTCDateTime, nullable=True),
    # Copied from the spec so listings need not decode every spec.
    Column("owner", String(ID_LEN), nullable=False),
    Column("schedule", String(ID_LEN), nullable=True),
    Column("description", Text, nullable=True),
    Column("tags", JSONText, nullable=False),
)

dag_files = Table(
    "dag_files",
    metadata,
    Column("path", Text, primary_key=True),
    Column("mtime", Float, nullable=False),
    Column("size", Integer, nullable=False),
    Column("source_hash", String(128), nullable=False),
    Column("dag_ids", JSONText, nullable=False),
    Column("last_parsed_at", UTCDateTime, nullable=True),
    Column("parse_duration", Float, nullable=False),
)

import_errors = Table(
    "import_errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, index=True),
    Column("message", Text, nullable=False),
    Column("lineno", Integer, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

dag_runs = Table(
    "dag_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_id", String(ID_LEN), nullable=False),
    Column("run_id", String(ID_LEN), nullable=False),
    Column("logical_date", UTCDateTime, nullable=False),
    Column("data_interval_start", UTCDateTime, nullable=False),
    Column("data_interval_end", UTCDateTime, nullable=False),
    Column("run_type", String(32), nullable=False),
    Column("state", String(32), nullable=False),
    Column("conf", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("start_date", UTCDateTime, nullable=True),
    Column("end_date", UTCDateTime, nullable=True),
    Column("dag_version", Integer, nullable=False),
    UniqueConstraint("dag_id", "run_id"),
    UniqueConstraint("dag_id", "logical_date"),
    Index("ix_dag_runs_dag_id_state", "dag_id", "state"),
)

task_instances = Table(
    "task_instances",
    metadata,
    Column("dag_id", String(ID_LEN), nullable=False),
    Column("run_id", String(ID_LEN), nullable=False),
    Column("task_id", String(ID_LEN), nullable=False),
    Column("state", String(32), nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("max_tries", Integer, nullable=False),
    Column("operator", String(ID_LEN), nullable=False),
    Column("pool", String(ID_LEN), nullable=False),
    Column("pool_slots", Integer, nullable=False),
    Column("start_date", UTCDateTime, nullable=True),
    Column("end_date", UTCDateTime, nullable=True),
    Column("duration", Float, nullable=True),
    Column("queued_at", UTCDateTime, nullable=True),
    Column("hostname", String(ID_LEN), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("sensor_started_at", UTCDateTime, nullable=True),
    Column("reason", Text, nullable=False),
    Column("rendered", JSONText, nullable=False),
    Column("updated_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("dag_id", "run_id", "task_id"),
    # Deleting a run deletes its task instances (and, below, their tries and results).
    ForeignKeyConstraint(["dag_id", "run_id"], ["dag_runs.dag_id", "dag_runs.run_id"], ondelete="CASCADE"),
    Index("ix_task_instances_state", "state"),
)

_TI_KEY = ["task_instances.dag_id", "task_instances.run_id", "task_instances.task_id"]

task_tries = Table(
    "task_tries",
    metadata,
    Column("dag_id", String(ID_LEN), nullable=False),
    Column("run_id", String(ID_LEN), nullable=False),
    Column("task_id", String(ID_LEN), nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    Column("start_date", UTCDateTime, nullable=True),
    Column("end_date", UTCDateTime, nullable=True),
    Column("duration", Float, nullable=True),
    Column("reason", Text, nullable=False),
    Column("hostname", String(ID_LEN), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("log_path", Text, nullable=True),
    Column("operator", String(ID_LEN), nullable=False),
    PrimaryKeyConstraint("dag_id", "run_id", "task_id", "try_number"),
    ForeignKeyConstraint(["dag_id", "run_id", "task_id"], _TI_KEY, ondelete="CASCADE"),
)

xcoms = Table(
    "xcoms",
    metadata,
    Column("dag_id", String(ID_LEN), nullable=False),
    Column("run_id", String(ID_LEN), nullable=False),
    Column("task_id", String(ID_LEN), nullable=False),
    Column("key", String(512), nullable=False),
    Column("value", JSONText, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("dag_id", "run_id", "task_id", "key"),
    ForeignKeyConstraint(["dag_id", "run_id", "task_id"], _TI_KEY, ondelete="CASCADE"),
)

pools = Table(
    "pools",
    metadata,
    Column("name", String(ID_LEN), primary_key=True),
    Column("slots", Integer, nullable=False),
    Column("description", Text, nullable=False),
)

scheduler_jobs = Table(
    "scheduler_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hostname", String(ID_LEN), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("state", String(32), nullable=False),
)

# -- the model registry (migration 0002); see headwater.ml.registry

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(ID_LEN), nullable=False),
    Column("version", Integer, nullable=False),  # 1, 2, ... per name
    Column("artifact_uri", Text, nullable=False),
    Column("checksum", String(64), nullable=False),  # sha256 of the artifact's manifest
    Column("format", String(32), nullable=False),  # lightgbm-text, skops, pickle
    Column("signature", JSONText, nullable=False),
    Column("profile", JSONText, nullable=False),
    Column("metrics", JSONText, nullable=False),
    Column("params", JSONText, nullable=False),
    Column("lineage", JSONText, nullable=False),
    Column("status", String(16), nullable=False),  # registered, approved, rejected
    Column("status_reason", Text, nullable=False),
    Column("status_by", String(ID_LEN), nullable=True),
    Column("status_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("author", String(ID_LEN), nullable=False),
    PrimaryKeyConstraint("name", "version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(ID_LEN), nullable=False),
    Column("alias", String(ID_LEN), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(ID_LEN), nullable=False),
    PrimaryKeyConstraint("name", "alias"),
    ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
)

model_alias_history = Table(
    "model_alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(ID_LEN), nullable=False),
    Column("alias", String(ID_LEN), nullable=False),
    Column("from_version", Integer, nullable=True),  # None: the alias was new
    Column("to_version", Integer, nullable=False),
    Column("who", String(ID_LEN), nullable=False),
    Column("why", Text, nullable=False),
    Column("moved_at", UTCDateTime, nullable=False),
    Index("ix_model_alias_history_name_alias", "name", "alias"),
)

#: The pool every task uses unless it names another; created by the first migration.
DEFAULT_POOL_SLOTS = 128
DEFAULT_POOL_DESCRIPTION = "Default pool"
