"""Fixtures for end-to-end orchestration tests: a headwater home with a real SQLite file and a DAG folder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from headwater.settings import Settings
from headwater.store.base import MetadataStore

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Home:
    """A throwaway ``$HEADWATER_HOME`` with its DAG folder and store."""

    root: Path
    settings: Settings
    store: MetadataStore

    @property
    def dags(self) -> Path:
        return self.settings.dags_folder

    def write_dag(self, name: str, code: str) -> Path:
        path = self.dags / name
        path.write_text(textwrap.dedent(code))
        return path

    def env(self) -> dict[str, str]:
        return dict(os.environ, HEADWATER_HOME=str(self.settings.home), HEADWATER_PARALLELISM="2",
                    HEADWATER_DAGS_FOLDER=str(self.dags))

    def cli(self, *args: str, timeout: float = 120, check: bool = False,
            cwd: Path | None = None, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real ``headwater`` CLI in a subprocess, as in a pipe 80 columns wide.

        ``env`` adds variables; ``input`` is what the user types (stdin is empty otherwise).
        """
        full = {k: v for k, v in self.env().items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
        full.update({"COLUMNS": "80", **(env or {})})
        proc = subprocess.run(
            [sys.executable, "-m", "headwater", *args], env=full, cwd=cwd or self.root,
            capture_output=True, text=True, timeout=timeout, input=input,
            stdin=subprocess.DEVNULL if input is None else None,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"headwater {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def refresh(self) -> None:
        from headwater.orchestration.discovery import refresh

        refresh(self.store, self.dags, timeout=self.settings.dag_parse_timeout)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    from headwater.store.sql import open_store

    hw = tmp_path / "home"
    dags = tmp_path / "dags"
    dags.mkdir()
    settings = Settings.from_env(
        {"HEADWATER_HOME": str(hw), "HEADWATER_DAGS_FOLDER": str(dags)},
        parallelism=2, min_file_process_interval=3600.0, dag_parse_timeout=10.0,
    )
    hw.mkdir()
    store = open_store(settings.db_url, create=True)
    yield Home(tmp_path, settings, store)
    store.close()
