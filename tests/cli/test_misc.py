"""``headwater runs|db|pools`` through the real CLI, and what starting the CLI costs."""

from __future__ import annotations

import subprocess
import sys

from .conftest import Home

ONE_TASK = """
    import datetime as dt
    from headwater import DAG, PythonOperator

    def maybe_fail(ds):
        if ds == "2024-01-02":
            raise RuntimeError("bad day")

    with DAG("days", schedule="@daily", start_date=dt.datetime(2024, 1, 1)) as dag:
        PythonOperator(task_id="t", python_callable=maybe_fail)
"""


def test_runs_list_filters_by_state_and_fits_80_columns(home: Home) -> None:
    home.write_dag("days.py", ONE_TASK)
    home.cli("dags", "backfill", "days", "-s", "2024-01-01", "-e", "2024-01-03", "--executor", "inline")
    home.cli("dags", "trigger", "days", "--date", "2024-02-01T06:30", "--run-id", "my-own-run-id", check=True)

    every = home.cli("runs", "list", check=True).stdout
    lines = every.splitlines()
    assert lines[0] == "DAG runs, newest first (times in UTC)"
    assert max(len(line) for line in lines) <= 80
    assert "2024-02-01 06:30" in every and "my-own-run-id" in every  # a custom run id gets its column
    assert [line.split()[1] for line in lines[3:]] == ["2024-02-01", "2024-01-03", "2024-01-02", "2024-01-01"]

    failed = home.cli("runs", "list", "days", "--state", "failed", check=True).stdout
    rows = failed.splitlines()[3:]
    assert len(rows) == 1 and rows[0].split()[1:5] == ["2024-01-02", "00:00", "backfill", "failed"]
    assert "run_id" not in failed  # usual ids say nothing the date and type do not

    none = home.cli("runs", "list", "days", "--state", "running", check=True).stdout
    assert none.strip() == "no runs in state running"


def test_db_init_and_reset(home: Home) -> None:
    home.write_dag("days.py", ONE_TASK)
    other = home.root / "other-home"
    init = home.cli("db", "init", env={"HEADWATER_HOME": str(other)}, check=True)
    assert f"database ready: sqlite:///{other}/headwater.db" in init.stdout
    assert (other / "headwater.db").is_file()

    home.cli("dags", "trigger", "days", "--date", "2024-01-05", check=True)
    assert len(home.store.list_runs("days")) == 1
    refused = home.cli("db", "reset", input="n\n")
    assert refused.returncode == 1 and len(home.store.list_runs("days")) == 1
    home.cli("db", "reset", "--yes", check=True)
    assert home.store.list_runs() == []
    assert home.cli("runs", "list", check=True).stdout.strip() == "no runs"
    assert "days" in home.cli("dags", "list", check=True).stdout  # the DAG folder is parsed again


def test_pools_set_list_delete(home: Home) -> None:
    home.cli("pools", "set", "gpu", "2", "--description", "the two GPUs", check=True)
    listing = home.cli("pools", "list", check=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in listing.splitlines()[2:]}
    assert rows["gpu"] == ["2", "0", "the", "two", "GPUs"]
    assert rows["default_pool"][1] == "0"
    home.cli("pools", "set", "gpu", "4", check=True)
    assert [p.slots for p in home.store.list_pools() if p.name == "gpu"] == [4]
    assert home.cli("pools", "delete", "gpu", check=True).stdout.strip() == "pool gpu deleted"
    assert "gpu" not in home.cli("pools", "list", check=True).stdout
    bad = home.cli("pools", "set", "gpu", "-1")
    assert bad.returncode == 2 and "-1" in bad.stderr


def test_help_does_not_import_the_database_layer_or_user_code_machinery() -> None:
    probe = (
        "import sys\n"
        "from headwater.cli.app import main\n"
        "for argv in (['--help'], ['dags', '--help'], ['tasks', 'clear', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'jinja2', 'rich')\n"
        "               or m.startswith(('headwater.orchestration', 'headwater.store', 'headwater.executor')))\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "Usage: headwater" in out.stdout
    assert "HEAVY []" in out.stderr, out.stderr

