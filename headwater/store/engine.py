"""The database edge of the SQL store: URLs, engines, SQLite settings, Alembic.

SQLite is set up for several processes on one file: WAL mode (readers never block the
writer), ``synchronous=NORMAL``, a 30 s busy timeout, foreign keys on, and write
transactions started with ``BEGIN IMMEDIATE`` (see :func:`_sqlite_on_begin`).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from headwater.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_S = 30
# Execution option that marks a connection's transaction as a write (BEGIN IMMEDIATE).
WRITE = "headwater_write"


def normalize_url(url: str) -> str:
    """Pick the psycopg 3 driver for ``postgresql://`` and ``postgres://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, fit to show to users."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An alembic ``Config`` for headwater's migrations, built in code (no ``alembic.ini``).

    Migrations run on ``connection`` when given, otherwise on a new engine for ``url``.
    Importing alembic costs ~270 ms, so only schema changes and tests call this.
    """
    from alembic.config import Config

    cfg = Config()
    # Config options go through configparser interpolation: escape "%".
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def sqlite_engine(url: str, connect_args: dict[str, Any]) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    options: dict[str, Any] = {}
    if memory:
        # One connection shared by every thread, or each checkout would see a new empty database.
        options["poolclass"] = StaticPool
        connect_args.setdefault("check_same_thread", False)
    elif not database.startswith("file:"):
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder {folder} for the SQLite database: {exc}",
                hint="set HEADWATER_HOME or HEADWATER_DB_URL to a writable place",
            ) from exc
    connect_args.setdefault("timeout", BUSY_TIMEOUT_S)
    engine = create_engine(parsed, connect_args=connect_args, **options)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # We emit BEGIN ourselves (see _sqlite_on_begin); the driver must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another process wrote in between; IMMEDIATE waits for the lock instead.
    mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def dispose_in_child(ref: weakref.ref[Engine]) -> Callable[[], None]:
    def dispose() -> None:
        engine = ref()
        if engine is not None:
            engine.dispose(close=False)

    return dispose
