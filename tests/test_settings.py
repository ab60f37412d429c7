"""Settings are built from the environment in one place, and only when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from headwater.settings import Settings


def test_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings.from_env({"HEADWATER_HOME": str(tmp_path / "hw")})
    assert s.home == tmp_path / "hw"
    assert s.db_url == f"sqlite:///{tmp_path / 'hw' / 'headwater.db'}"
    assert s.dags_folder == tmp_path / "hw" / "dags"
    assert s.logs_folder == tmp_path / "hw" / "logs"
    assert s.dag_parse_timeout == 30.0


def test_environment_and_overrides(tmp_path: Path) -> None:
    env = {"HEADWATER_HOME": str(tmp_path), "HEADWATER_DB_URL": "postgresql://u@h/db",
           "HEADWATER_DAGS_FOLDER": str(tmp_path / "d"), "HEADWATER_PARALLELISM": "0",
           "HEADWATER_DAG_PARSE_TIMEOUT": "2.5"}
    s = Settings.from_env(env, parallelism=None)
    assert (s.db_url, s.dags_folder, s.parallelism, s.dag_parse_timeout) == (
        "postgresql://u@h/db", tmp_path / "d", 1, 2.5)
    assert Settings.from_env(env, parallelism=7).parallelism == 7


def test_importing_headwater_reads_no_environment() -> None:
    code = ("import os\nseen = []\nclass Env(dict):\n    def get(self, k, d=None):\n        seen.append(k)\n"
            "        return super().get(k, d)\n    def __getitem__(self, k):\n        seen.append(k)\n"
            "        return super().__getitem__(k)\nos.environ = Env(os.environ)\nimport headwater\n"
            "from headwater import DAG, PythonOperator\nprint([k for k in seen if k.startswith('HEADWATER')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
