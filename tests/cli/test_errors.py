"""What a user sees when something is wrong: exit codes, one-line errors with hints, no tracebacks."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import Home

FLOW = """
    import datetime as dt
    from headwater import DAG, PythonOperator

    def boom():
        raise ValueError("the input file has 0 rows")

    with DAG("flow", schedule="@daily", start_date=dt.datetime(2024, 1, 1)) as dag:
        ok = PythonOperator(task_id="extract", python_callable=lambda: 1)
        bad = PythonOperator(task_id="transform", python_callable=boom)
        ok >> bad
"""


@pytest.fixture
def flow(home: Home) -> Home:
    home.write_dag("flow.py", FLOW)
    return home


def one_error(proc: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The error and hint lines of a failed command, checking there is nothing else on stderr."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 2, proc.stderr
    error, hint = lines
    assert error.startswith("error: ")
    assert hint.startswith("hint: ")
    return error, hint


def test_a_failing_task_makes_dags_test_exit_1_with_the_reason(flow: Home) -> None:
    out = flow.cli("dags", "test", "flow", "2024-01-01")
    assert out.returncode == 1
    assert "run failed" in out.stdout
    reason_lines = [line for line in out.stdout.splitlines() if "the input file has 0 rows" in line]
    assert any("transform" in line and "ValueError" in line for line in reason_lines), out.stdout


def test_an_unknown_dag_is_one_line_with_a_suggestion_and_no_traceback(flow: Home) -> None:
    error, hint = one_error(flow.cli("dags", "test", "flwo"))
    assert "'flwo'" in error
    assert hint == "hint: did you mean 'flow'?"


def test_debug_shows_the_traceback(flow: Home) -> None:
    out = flow.cli("--debug", "dags", "test", "flwo")
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stderr
    assert "DagNotFoundError" in out.stderr


@pytest.mark.parametrize(
    ("args", "error_part", "hint_part"),
    [
        (("dags", "trigger", "flow", "--conf", "{not json"), "--conf is not valid JSON", '{"x": 1}'),
        (("dags", "trigger", "flow", "--conf", "[1, 2]"), "must be a JSON object", '{"x": 1}'),
        (("dags", "test", "flow", "2024-02-30"), "cannot read '2024-02-30' as a date", "YYYY-MM-DD"),
        (("dags", "backfill", "flow", "-s", "2024-01-05", "-e", "2024-01-01"), "before start", "swap"),
        (("tasks", "test", "flow", "transfrom", "2024-01-01"), "no task 'transfrom'", "did you mean 'transform'?"),
        (("tasks", "clear", "flow", "--task", "trans(", "--yes"), "not a valid regular expression", "backslash"),
        (("tasks", "clear", "flow", "--task", "^nothing$", "--yes"), "matches no task", "extract, transform"),
        (("tasks", "state", "flow", "extract", "2030-01-01"), "has no run at 2030-01-01", "runs list flow"),
        (("runs", "list", "--state", "done"), "'done' is not a run state", "queued"),
        (("pools", "delete", "default_pool"), "cannot be deleted", "pools set"),
        (("pools", "delete", "no_such_pool"), "no pool named 'no_such_pool'", "pools list"),
    ],
)
def test_bad_input_is_one_error_line_and_one_hint(flow: Home, args: tuple[str, ...], error_part: str,
                                                  hint_part: str) -> None:
    error, hint = one_error(flow.cli(*args))
    assert error_part in error
    assert hint_part in hint


def test_bad_usage_exits_2_with_clicks_message(flow: Home) -> None:
    out = flow.cli("dags", "backfill", "flow")
    assert out.returncode == 2
    assert "Missing option '--start'" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unknown_dag_hint_mentions_files_that_failed_to_load(flow: Home) -> None:
    flow.write_dag("broken.py", "import nosuchmodule\n")
    _, hint = one_error(flow.cli("dags", "test", "other_dag"))
    assert "1 DAG file(s) failed to load" in hint
