"""Acceptance: the three design-document examples run through the real CLI, from copies in temp folders."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .conftest import Home

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def copy_example_dags(home: Home) -> None:
    for path in (EXAMPLES / "dags").glob("*.py"):
        shutil.copy(path, home.dags / path.name)


def test_simple_dag_sensor_and_bash_through_dags_test(home: Home) -> None:
    copy_example_dags(home)
    out = home.cli("dags", "test", "simple_dag", "2018-01-08")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "run success" in out.stdout
    assert re.search(r"wait_a_second\s+success", out.stdout)
    assert re.search(r"print_date_in_bash\s+success", out.stdout)

    logs = home.cli("tasks", "logs", "simple_dag", "print_date_in_bash", "2018-01-08", check=True).stdout
    after_command = logs.split("Running command: date", 1)[1]
    # `date` prints e.g. "Sun Nov 22 00:41:49 UTC 2026": a weekday, a month, a time and a year.
    assert re.search(r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d .*\d{4}", after_command), logs
    assert "Command exited with return code 0" in logs


def test_data_pipeline_backfill_of_three_days(home: Home) -> None:
    copy_example_dags(home)
    out = home.cli("dags", "backfill", "data_pipeline", "--start", "2021-01-01", "--end", "2021-01-03")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 new run(s)" in out.stdout
    runs = home.store.list_runs("data_pipeline", newest_first=False)
    assert [(r.logical_date.isoformat(), r.state.value) for r in runs] == [
        ("2021-01-01T12:00:00+00:00", "success"),
        ("2021-01-02T12:00:00+00:00", "success"),
        ("2021-01-03T12:00:00+00:00", "success"),
    ]
    # A day finds that day's run, whatever its time.
    log = home.cli("tasks", "logs", "data_pipeline", "ingest_data", "2021-01-02", check=True).stdout
    assert "Ingesting data" in log
    assert "backfill__2021-01-02T12:00:00+00:00" in log


def test_luigi_pipeline_runs_once_then_is_complete(home: Home, tmp_path: Path) -> None:
    modules, work = tmp_path / "modules", tmp_path / "work"
    modules.mkdir()
    work.mkdir()
    shutil.copy(EXAMPLES / "luigi_style" / "pipeline.py", modules / "pipeline.py")
    env = {"PYTHONPATH": str(modules)}

    first = home.cli("run", "pipeline.AddMyTask", cwd=work, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 task(s) ran, 0 already complete; run success" in first.stdout
    one, two = work / "data" / "output_one.txt", work / "data" / "output_two.txt"
    assert one.read_text() == "pipeline"
    assert two.read_text() == "My pipeline"
    stamps = (one.stat().st_mtime_ns, two.stat().st_mtime_ns)

    second = home.cli("run", "pipeline.AddMyTask", cwd=work, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    # As Luigi: the root task is complete, so what it requires is not even looked at.
    assert "0 task(s) ran" in second.stdout
    assert re.search(r"AddMyTask\s+success\s+already complete", second.stdout)
    assert (one.stat().st_mtime_ns, two.stat().st_mtime_ns) == stamps


def test_example_dags_are_listed_shown_and_their_runs_listed(home: Home) -> None:
    # What the old `make demo` showed of these examples, before it became the house-price scenario.
    copy_example_dags(home)
    listed = home.cli("dags", "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "simple_dag" in listed.stdout and "data_pipeline" in listed.stdout
    shown = home.cli("dags", "show", "simple_dag")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "wait_a_second" in shown.stdout and "print_date_in_bash" in shown.stdout
    assert home.cli("dags", "test", "simple_dag", "2018-01-08").returncode == 0
    runs = home.cli("runs", "list")
    assert runs.returncode == 0, runs.stdout + runs.stderr
    assert re.search(r"simple_dag\s.*success", runs.stdout), runs.stdout
