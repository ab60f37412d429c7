"""Model registry: model versions, aliases and the history of every alias move.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Types are spelled out (not imported from ``headwater.store.schema``), as in 0001:
datetimes are naive UTC ``DateTime``; JSON is ``Text``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

ID_LEN = 250


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=False), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(ID_LEN), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("lineage", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("status_by", sa.String(ID_LEN), nullable=True),
        _when("status_at"),
        _when("created_at", nullable=False),
        sa.Column("author", sa.String(ID_LEN), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_model_versions"),
    )
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(ID_LEN), nullable=False),
        sa.Column("alias", sa.String(ID_LEN), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _when("updated_at", nullable=False),
        sa.Column("updated_by", sa.String(ID_LEN), nullable=False),
        sa.PrimaryKeyConstraint("name", "alias", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["model_versions.name", "model_versions.version"],
            name="fk_model_aliases_model_versions",
        ),
    )
    op.create_table(
        "model_alias_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(ID_LEN), nullable=False),
        sa.Column("alias", sa.String(ID_LEN), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("who", sa.String(ID_LEN), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        _when("moved_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_alias_history"),
    )
    op.create_index("ix_model_alias_history_name_alias", "model_alias_history", ["name", "alias"])


def downgrade() -> None:
    op.drop_index("ix_model_alias_history_name_alias", table_name="model_alias_history")
    for table in ("model_alias_history", "model_aliases", "model_versions"):
        op.drop_table(table)
