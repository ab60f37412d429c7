"""``headwater dags ...`` through the real CLI: list, show, trigger, pause, backfill."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from headwater.orchestration.states import RunState

from .conftest import Home

COUNTING = """
    import datetime as dt
    from pathlib import Path
    from headwater import DAG, PythonOperator

    COUNTS = Path({counts!r})

    def work(ti, ds):
        with (COUNTS / f"{{ti.task_id}}_{{ds}}").open("a") as f:
            f.write("x")
        if ti.task_id == "b" and ds == "{fail_on}" and not (COUNTS / "fixed").exists():
            raise RuntimeError("b breaks on {fail_on}")

    with DAG("{dag_id}", schedule={schedule!r}, start_date=dt.datetime(2021, 1, 1), catchup=False) as dag:
        PythonOperator(task_id="a", python_callable=work) >> PythonOperator(task_id="b", python_callable=work)
"""


def counts(home: Home) -> dict[str, int]:
    folder = home.root / "counts"
    return {p.name: len(p.read_text()) for p in folder.iterdir() if p.name != "fixed"}


def write_counting_dag(home: Home, dag_id: str = "counted", fail_on: str = "never",
                       schedule: str | None = "@daily") -> None:
    """Tasks a >> b; each try appends to counts/<task>_<ds>; b fails on ``fail_on`` until counts/fixed exists."""
    (home.root / "counts").mkdir(exist_ok=True)
    code = COUNTING.format(counts=str(home.root / "counts"), dag_id=dag_id, fail_on=fail_on, schedule=schedule)
    home.write_dag(f"{dag_id}.py", code)


def test_dags_list_shows_good_dags_and_broken_files_with_their_line(home: Home) -> None:
    write_counting_dag(home)
    home.write_dag("broken.py", "import os\n\nimport nosuchmodule\n")
    home.write_dag("bad_syntax.py", "x = (\n")
    out = home.cli("dags", "list", check=True).stdout
    assert re.search(r"^counted\s+0 0 \* \* \*\s+2\s+no\s+-\s+counted\.py", out, re.M), out
    assert "2 DAG file(s) failed to load" in out
    assert re.search(r"broken\.py:3 import: ModuleNotFoundError: No module named 'nosuchmodule'", out)
    assert re.search(r"bad_syntax\.py:1 syntax: ", out)
    table = out.split("\n\n")[0].splitlines()[1:]  # under the "DAGs in <folder>" heading
    assert len(table) == 3 and max(len(line) for line in table) <= 80


def test_dags_show_prints_the_settings_tree_and_graph(home: Home) -> None:
    write_counting_dag(home)
    out = home.cli("dags", "show", "counted", check=True).stdout
    assert "schedule=0 0 * * *" in out
    assert "start=2021-01-01 00:00 UTC" in out
    assert re.search(r"└── a <PythonOperator>\n\s+└── b <PythonOperator>", out), out
    assert "layer 1\n  a\nlayer 2\n  b  <- a" in out


def test_the_graph_of_a_100_task_dag_fits_80_columns_and_names_every_task(home: Home) -> None:
    home.write_dag(
        "wide.py",
        """
        import datetime as dt
        from headwater import DAG, EmptyOperator

        with DAG("wide", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
            start, end = EmptyOperator(task_id="start"), EmptyOperator(task_id="end")
            for i in range(98):
                start >> EmptyOperator(task_id=f"partition_{i:03d}_transform") >> end
        """,
    )
    out = home.cli("dags", "show", "wide", check=True).stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines if not line.startswith("file: ")) <= 80
    assert "tree left out for 100 tasks" in out
    assert "graph: 100 task(s), 196 edge(s), 3 layer(s)" in out
    assert "layer 2 (98 tasks)" in out
    for i in range(98):
        assert f"  partition_{i:03d}_transform" in out
    (end_line,) = [line for line in lines if line.startswith("  end ")]
    assert re.search(r"<- partition_000_transform, .* \(\+\d+ more\)$", end_line)
    assert len(lines) < 110  # one line a task, a few headings


def test_trigger_then_scheduler_until_idle_runs_it(home: Home) -> None:
    write_counting_dag(home, schedule=None)
    trig = home.cli("dags", "trigger", "counted", "--date", "2024-03-01", "--conf", '{"size": 3}', check=True)
    assert "queued run manual__2024-03-01T00:00:00+00:00 of counted" in trig.stdout
    sched = home.cli("scheduler", "--until-idle", check=True)
    assert "counted manual__2024-03-01T00:00:00+00:00: success" in sched.stdout
    assert counts(home) == {"a_2024-03-01": 1, "b_2024-03-01": 1}
    run = home.store.get_run("counted", "manual__2024-03-01T00:00:00+00:00")
    assert run is not None and run.conf == {"size": 3}


@pytest.mark.slow
def test_pause_stops_the_scheduler_creating_runs_until_unpaused(home: Home) -> None:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - dt.timedelta(days=3)
    home.write_dag(
        "catchup.py",
        f"""
        import datetime as dt
        from headwater import DAG, EmptyOperator

        with DAG("catchup", schedule="@daily", catchup=True,
                 start_date=dt.datetime({start.year}, {start.month}, {start.day}, tzinfo=dt.timezone.utc)) as dag:
            EmptyOperator(task_id="noop")
        """,
    )
    assert home.cli("dags", "pause", "catchup", check=True).stdout.strip() == "catchup paused"
    home.cli("scheduler", "--until-idle", check=True)
    assert home.store.list_runs("catchup") == []
    assert "no runs" in home.cli("runs", "list", "catchup", check=True).stdout

    home.cli("dags", "unpause", "catchup", check=True)
    home.cli("scheduler", "--until-idle", check=True)
    runs = home.store.list_runs("catchup", newest_first=False)
    assert [r.logical_date for r in runs] == [start + dt.timedelta(days=i) for i in range(3)]
    assert all(r.state is RunState.SUCCESS for r in runs)


def test_backfill_rerun_failed_reruns_only_the_failed_tasks_of_failed_runs(home: Home) -> None:
    write_counting_dag(home, fail_on="2021-01-02")
    first = home.cli("dags", "backfill", "counted", "-s", "2021-01-01", "-e", "2021-01-03")
    assert first.returncode == 1
    assert "1 run(s) did not succeed" in first.stdout
    assert re.search(r"2021-01-02 00:00\s+failed\s+b", first.stdout)
    failed = home.cli("runs", "list", "counted", "--state", "failed", check=True).stdout
    assert "2021-01-02 00:00" in failed and "2021-01-01" not in failed and "2021-01-03" not in failed

    (home.root / "counts" / "fixed").write_text("")
    again = home.cli("dags", "backfill", "counted", "-s", "2021-01-01", "-e", "2021-01-03", "--rerun-failed")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 new run(s), 1 rerun, 2 already there" in again.stdout
    assert counts(home) == {
        "a_2021-01-01": 1, "b_2021-01-01": 1,
        "a_2021-01-02": 1, "b_2021-01-02": 2,
        "a_2021-01-03": 1, "b_2021-01-03": 1,
    }
    assert all(r.state is RunState.SUCCESS for r in home.store.list_runs("counted"))


def test_a_30_day_backfill_of_a_daily_dag_creates_30_runs(home: Home) -> None:
    write_counting_dag(home)
    out = home.cli("dags", "backfill", "counted", "--start", "2021-01-01", "--end", "2021-01-30")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "30 new run(s)" in out.stdout
    runs = home.store.list_runs("counted", limit=None, newest_first=False)
    assert len(runs) == 30
    assert [r.logical_date.day for r in runs] == list(range(1, 31))
    assert all(r.state is RunState.SUCCESS and r.run_type == "backfill" for r in runs)
    # In a pipe: no progress bar, no colour codes, nothing wider than 80 columns.
    assert "\x1b[" not in out.stdout and "━" not in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    # A second backfill of the same days has nothing to do.
    again = home.cli("dags", "backfill", "counted", "--start", "2021-01-01", "--end", "2021-01-30", check=True)
    assert "0 new run(s), 0 rerun, 30 already there" in again.stdout


def test_backfill_shows_a_progress_bar_on_a_terminal(home: Home) -> None:
    write_counting_dag(home)
    out = home.cli("dags", "backfill", "counted", "-s", "2021-01-01", "-e", "2021-01-02", "--executor", "inline",
                   env={"TTY_COMPATIBLE": "1"}, check=True)
    assert re.search(r"backfill .*4/4", out.stdout), out.stdout


def test_a_backfill_run_cleared_with_tasks_clear_is_run_by_the_next_backfill(home: Home) -> None:
    write_counting_dag(home, fail_on="2021-01-01")
    home.cli("dags", "backfill", "counted", "-s", "2021-01-01", "-e", "2021-01-01")
    (home.root / "counts" / "fixed").write_text("")
    home.cli("tasks", "clear", "counted", "--only-failed", "--yes", check=True)
    # The scheduler leaves backfill runs to `dags backfill`, so that is where the cleared run must go on.
    home.cli("dags", "backfill", "counted", "-s", "2021-01-01", "-e", "2021-01-01", "--rerun-failed")
    (run,) = home.store.list_runs("counted")
    assert run.state is RunState.SUCCESS
    assert counts(home) == {"a_2021-01-01": 1, "b_2021-01-01": 2}


@pytest.mark.slow
def test_backfill_on_a_local_dask_cluster(home: Home) -> None:
    write_counting_dag(home)
    proc = home.cli("dags", "backfill", "counted", "-s", "2021-01-01", "-e", "2021-01-02",
                    "--executor", "dask", "-p", "2", check=True)
    assert "2 new run(s)" in proc.stdout
    assert all(r.state is RunState.SUCCESS for r in home.store.list_runs("counted"))
    assert counts(home) == {"a_2021-01-01": 1, "b_2021-01-01": 1, "a_2021-01-02": 1, "b_2021-01-02": 1}
