"""Store fixtures: every contract test runs on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.store.sql import SqlStore, open_store

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.service)]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'headwater.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """An initialised store on each backend."""
    with open_store(store_url, create=True) as s:
        yield s


@pytest.fixture
def empty_store(store_url: str) -> Iterator[SqlStore]:
    """A store on each backend whose database has no schema yet."""
    with SqlStore(store_url) as s:
        yield s
