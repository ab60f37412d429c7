"""The same scheduler, CLI and workers with the metadata in PostgreSQL instead of SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from headwater.orchestration.states import RunState, TaskState

pytestmark = [pytest.mark.service, pytest.mark.slow]


def test_backfill_and_scheduler_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    from headwater.store.sql import open_store

    dags = tmp_path / "dags"
    dags.mkdir()
    marker = tmp_path / "attempts"
    (dags / "pg_dag.py").write_text(textwrap.dedent(f"""
        import datetime as dt
        from pathlib import Path
        from headwater import DAG, BranchPythonOperator, EmptyOperator, task

        with DAG("pg_dag", schedule="@daily", start_date=dt.datetime(2024, 1, 1), catchup=False,
                 default_args={{"retries": 1, "retry_delay": dt.timedelta(seconds=0)}}):
            @task
            def flaky(ds=None):
                p = Path({str(marker)!r}) / ds
                p.parent.mkdir(exist_ok=True)
                first = not p.exists()
                p.write_text("seen")
                if first:
                    raise RuntimeError("first try fails")
                return {{"day": ds}}

            @task
            def use(value):
                return value["day"].replace("-", "")

            pick = BranchPythonOperator(task_id="pick", python_callable=lambda: "yes")
            use(flaky()) >> pick >> [EmptyOperator(task_id="yes"), EmptyOperator(task_id="no")]
    """))
    env = dict(os.environ, HEADWATER_HOME=str(tmp_path / "home"), HEADWATER_DB_URL=pg_url,
               HEADWATER_DAGS_FOLDER=str(dags))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "headwater", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    assert cli("db", "init").returncode == 0
    backfill = cli("dags", "backfill", "pg_dag", "-s", "2024-01-01", "-e", "2024-01-03", "-p", "2")
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    store = open_store(pg_url)
    try:
        runs = store.list_runs("pg_dag", newest_first=False)
        assert [(r.logical_date.day, r.state) for r in runs] == [(d, RunState.SUCCESS) for d in (1, 2, 3)]
        run = runs[0]
        states = {t.task_id: (t.state, t.try_number) for t in store.list_task_instances("pg_dag", run.run_id)}
        assert states["flaky"] == (TaskState.SUCCESS, 2)
        assert states["no"][0] is TaskState.SKIPPED and states["yes"][0] is TaskState.SUCCESS
        (x,) = store.get_xcoms("pg_dag", run.run_id, ["use"])
        assert x.value == {"json": "20240101"}
        # The scheduler on the same database creates the latest scheduled run (catchup off) and runs it.
        sched = cli("scheduler", "--until-idle", "-p", "2")
        assert sched.returncode == 0, sched.stdout + sched.stderr
        scheduled = store.list_runs("pg_dag", run_types=["scheduled"])
        assert len(scheduled) == 1 and scheduled[0].state is RunState.SUCCESS
    finally:
        store.close()
