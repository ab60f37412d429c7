"""Initial schema: DAGs, DAG files, import errors, runs, task instances, tries, results, pools, schedulers.

Revision ID: 0001
Revises:
Create Date: 2024-11-22

Types are spelled out here rather than imported from ``headwater.store.schema`` so
this migration keeps meaning the same thing when the schema module changes:
datetimes are naive UTC ``DateTime``; JSON is ``Text``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ID_LEN = 250


def _id(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(ID_LEN), nullable=False)


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=False), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "dags",
        sa.Column("dag_id", sa.String(ID_LEN), nullable=False),
        sa.Column("fileloc", sa.Text(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("source_hash", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_paused", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        _when("last_parsed_at"),
        sa.Column("owner", sa.String(ID_LEN), nullable=False),
        sa.Column("schedule", sa.String(ID_LEN), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("dag_id", name="pk_dags"),
    )
    op.create_table(
        "dag_files",
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("source_hash", sa.String(128), nullable=False),
        sa.Column("dag_ids", sa.Text(), nullable=False),
        _when("last_parsed_at"),
        sa.Column("parse_duration", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_dag_files"),
    )
    op.create_table(
        "import_errors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("lineno", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_import_errors"),
    )
    op.create_index("ix_import_errors_path", "import_errors", ["path"])
    op.create_table(
        "dag_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _id("dag_id"),
        _id("run_id"),
        _when("logical_date", nullable=False),
        _when("data_interval_start", nullable=False),
        _when("data_interval_end", nullable=False),
        sa.Column("run_type", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("conf", sa.Text(), nullable=False),
        _when("created_at", nullable=False),
        _when("start_date"),
        _when("end_date"),
        sa.Column("dag_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dag_runs"),
        sa.UniqueConstraint("dag_id", "run_id", name="uq_dag_runs_dag_id_run_id"),
        sa.UniqueConstraint("dag_id", "logical_date", name="uq_dag_runs_dag_id_logical_date"),
    )
    op.create_index("ix_dag_runs_dag_id_state", "dag_runs", ["dag_id", "state"])
    op.create_table(
        "task_instances",
        _id("dag_id"),
        _id("run_id"),
        _id("task_id"),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("max_tries", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(ID_LEN), nullable=False),
        sa.Column("pool", sa.String(ID_LEN), nullable=False),
        sa.Column("pool_slots", sa.Integer(), nullable=False),
        _when("start_date"),
        _when("end_date"),
        sa.Column("duration", sa.Float(), nullable=True),
        _when("queued_at"),
        sa.Column("hostname", sa.String(ID_LEN), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        _when("next_attempt_at"),
        _when("sensor_started_at"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rendered", sa.Text(), nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("dag_id", "run_id", "task_id", name="pk_task_instances"),
        sa.ForeignKeyConstraint(
            ["dag_id", "run_id"],
            ["dag_runs.dag_id", "dag_runs.run_id"],
            name="fk_task_instances_dag_runs",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_task_instances_state", "task_instances", ["state"])
    ti_key = ["task_instances.dag_id", "task_instances.run_id", "task_instances.task_id"]
    op.create_table(
        "task_tries",
        _id("dag_id"),
        _id("run_id"),
        _id("task_id"),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        _when("start_date"),
        _when("end_date"),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("hostname", sa.String(ID_LEN), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("operator", sa.String(ID_LEN), nullable=False),
        sa.PrimaryKeyConstraint("dag_id", "run_id", "task_id", "try_number", name="pk_task_tries"),
        sa.ForeignKeyConstraint(
            ["dag_id", "run_id", "task_id"], ti_key, name="fk_task_tries_task_instances", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "xcoms",
        _id("dag_id"),
        _id("run_id"),
        _id("task_id"),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("dag_id", "run_id", "task_id", "key", name="pk_xcoms"),
        sa.ForeignKeyConstraint(
            ["dag_id", "run_id", "task_id"], ti_key, name="fk_xcoms_task_instances", ondelete="CASCADE"
        ),
    )
    pools = op.create_table(
        "pools",
        sa.Column("name", sa.String(ID_LEN), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_pools"),
    )
    op.create_table(
        "scheduler_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hostname", sa.String(ID_LEN), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        _when("started_at", nullable=False),
        _when("heartbeat_at", nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduler_jobs"),
    )
    op.bulk_insert(pools, [{"name": "default_pool", "slots": 128, "description": "Default pool"}])


def downgrade() -> None:
    for table in (
        "scheduler_jobs",
        "pools",
        "xcoms",
        "task_tries",
        "task_instances",
        "dag_runs",
        "import_errors",
        "dag_files",
        "dags",
    ):
        op.drop_table(table)
