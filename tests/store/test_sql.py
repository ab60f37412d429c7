"""What is particular to SqlStore: URLs, SQLite settings, error translation, import cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from headwater.errors import StoreError
from headwater.store.sql import SqlStore, mask_url, normalize_url, open_store


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u:p@h:5433/db", "postgresql+psycopg://u:p@h:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_password_never_shown() -> None:
    assert mask_url("postgresql://ana:s3cret@h/db") == "postgresql://ana:***@h/db"
    # Port 1 on the loopback refuses at once: the error must name the URL, not the password.
    store = SqlStore("postgres://ana:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in repr(store) and "s3cret" not in store.safe_url
    with pytest.raises(StoreError) as info:
        store.check()
    assert "s3cret" not in str(info.value)
    assert "postgresql+psycopg://ana:***@127.0.0.1:1/db" in info.value.message
    assert info.value.hint == "check that the database is reachable and writable"
    store.close()


@pytest.mark.parametrize("url", ["nonsense", "mysql://u@h/db"])
def test_bad_urls_are_store_errors(url: str) -> None:
    with pytest.raises(StoreError) as info:
        SqlStore(url)
    assert info.value.hint is not None and "sqlite:///" in info.value.hint


def test_sqlite_file_settings_and_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "headwater.db"
    with open_store(f"sqlite:///{path}", create=True) as store:
        assert path.exists()
        with store.engine.connect() as conn:
            pragmas = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    # synchronous NORMAL is 1.
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 30000, "foreign_keys": 1}


def test_in_memory_sqlite_keeps_one_database(tmp_path: Path) -> None:
    with open_store("sqlite://", create=True) as store:
        store.set_pool("gpu", 1)
        assert store.get_pool("gpu") is not None


def test_unwritable_sqlite_folder_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the folder") as info:
        open_store(f"sqlite:///{blocker / 'headwater.db'}", create=True)
    assert info.value.hint is not None and "HEADWATER_DB_URL" in info.value.hint


def test_cli_path_does_not_import_alembic(tmp_path: Path) -> None:
    """Opening and checking a store must not pay alembic's import time (~270 ms)."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    open_store(url, create=True).close()
    code = (
        "import sys\n"
        "from headwater.store.sql import open_store\n"
        f"s = open_store({url!r}); s.check(); s.list_dags(); s.close()\n"
        "assert 'alembic' not in sys.modules, 'alembic imported'\n"
        "assert 'sqlalchemy.orm' not in sys.modules, 'sqlalchemy.orm imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
