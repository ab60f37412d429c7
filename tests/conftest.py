"""Fixtures shared by every test package.

``pg_url``: a PostgreSQL URL (127.0.0.1:5432, database ``test``, trust auth) whose
``search_path`` is a fresh, empty schema made for the test and dropped after it.
Tests using it should be marked ``pytest.mark.service``; they are skipped, with the
reason, when PostgreSQL is unreachable.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DATABASE = "test"
# Trust auth accepts whichever role exists; CI images differ.
_PG_ROLES = ("postgres", "root")


def _pg_connect(role: str, *, timeout: float = 3.0) -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, dbname=PG_DATABASE, user=role, connect_timeout=timeout, autocommit=True
    )


@pytest.fixture(scope="session")
def pg_role() -> str:
    """A PostgreSQL role that can log in to the test database, or skip when there is none."""
    problems = []
    for role in _PG_ROLES:
        try:
            with _pg_connect(role):
                return role
        except Exception as exc:  # psycopg.Error, or psycopg not installed
            problems.append(f"{role}: {str(exc).strip()}")
    pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT}/{PG_DATABASE} is unreachable ({'; '.join(problems)})")


@pytest.fixture
def pg_url(pg_role: str) -> Iterator[str]:
    """A ``postgresql+psycopg://`` URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"hw_{uuid.uuid4().hex[:12]}"
    with _pg_connect(pg_role) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://{pg_role}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}?options=-csearch_path%3D{schema}"
    finally:
        with _pg_connect(pg_role) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
