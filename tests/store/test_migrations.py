"""The migrations and ``schema.metadata`` describe the same database."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from headwater.store import schema
from headwater.store.sql import SqlStore, alembic_config


def test_migrated_database_matches_schema_metadata(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, schema.metadata)
    assert diff == []


def test_schema_revisions_are_alembic_history() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_current_head() == schema.SCHEMA_REVISION
    oldest_first = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert tuple(oldest_first) == schema.SCHEMA_REVISIONS


def test_migrations_downgrade_to_nothing_and_back(store: SqlStore) -> None:
    from alembic import command

    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert store.schema_revision() is None
    store.init()
    store.check()
    assert [p.name for p in store.list_pools()] == ["default_pool"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_offline_sql_renders(dialect: str, capsys: pytest.CaptureFixture[str]) -> None:
    from alembic import command

    url = "sqlite:///unused.db" if dialect == "sqlite" else "postgresql://u@127.0.0.1/unused"
    command.upgrade(alembic_config(url=url), "head", sql=True)
    out = capsys.readouterr().out
    assert "CREATE TABLE task_instances" in out
    assert "default_pool" in out
