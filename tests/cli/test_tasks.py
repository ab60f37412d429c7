"""``headwater tasks ...`` through the real CLI: clear, state, logs, test; log files stay in the logs folder."""

from __future__ import annotations

import dataclasses
import re

import pytest

from headwater.orchestration.states import RunState, TaskState
from headwater.store.base import UnitOfWork

from .conftest import Home

FLOW = """
    import datetime as dt
    from pathlib import Path
    from headwater import DAG, PythonOperator

    COUNTS = Path({counts!r})

    def work(ti):
        with (COUNTS / ti.task_id).open("a") as f:
            f.write("x")
        if ti.task_id == "b" and not (COUNTS / "fixed").exists():
            raise RuntimeError("b is broken until counts/fixed exists")

    with DAG("flow", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
        a, b, c, d = (PythonOperator(task_id=t, python_callable=work) for t in "abcd")
        a >> b >> c
        a >> d
"""

RETRY = """
    import datetime as dt
    from pathlib import Path
    from headwater import DAG, PythonOperator

    MARK = Path({mark!r})

    def flaky():
        if not MARK.exists():
            MARK.write_text("tried")
            raise RuntimeError("first try fails on purpose")
        print("second try works")

    with DAG("retrying", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
        PythonOperator(task_id="flaky", python_callable=flaky, retries=1, retry_delay=dt.timedelta(0))
"""

DATE = "2024-05-01"
RUN_ID = "manual__2024-05-01T00:00:00+00:00"


def counts(home: Home) -> dict[str, int]:
    return {p.name: len(p.read_text()) for p in (home.root / "counts").iterdir() if p.name != "fixed"}


def flow_home(home: Home) -> Home:
    (home.root / "counts").mkdir()
    home.write_dag("flow.py", FLOW.format(counts=str(home.root / "counts")))
    return home


def states(home: Home) -> dict[str, TaskState]:
    return {ti.task_id: ti.state for ti in home.store.list_task_instances("flow", RUN_ID)}


@pytest.mark.slow
def test_clear_only_failed_then_the_scheduler_reruns_only_those_and_downstream_clears(home: Home) -> None:
    flow_home(home)
    home.cli("dags", "trigger", "flow", "--date", DATE, check=True)
    first = home.cli("scheduler", "--until-idle", check=True)
    assert f"flow {RUN_ID}: failed" in first.stdout
    assert states(home) == {"a": TaskState.SUCCESS, "b": TaskState.FAILED, "c": TaskState.UPSTREAM_FAILED,
                            "d": TaskState.SUCCESS}
    assert home.cli("tasks", "state", "flow", "b", DATE, check=True).stdout.strip() == "failed"
    assert counts(home) == {"a": 1, "b": 1, "d": 1}

    (home.root / "counts" / "fixed").write_text("")
    cleared = home.cli("tasks", "clear", "flow", "--only-failed", "--yes", check=True)
    assert "cleared 2 task instance(s) in 1 run(s)" in cleared.stdout  # b, and c that never ran
    home.cli("scheduler", "--until-idle", check=True)
    assert counts(home) == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert set(states(home).values()) == {TaskState.SUCCESS}
    run = home.store.get_run("flow", RUN_ID)
    assert run is not None and run.state is RunState.SUCCESS

    down = home.cli("tasks", "clear", "flow", "--task", "^b$", "--downstream", "--yes", check=True)
    assert "cleared 2 task instance(s)" in down.stdout
    assert states(home)["a"] is TaskState.SUCCESS and states(home)["b"] is TaskState.NONE
    home.cli("scheduler", "--until-idle", check=True)
    assert counts(home) == {"a": 1, "b": 3, "c": 2, "d": 1}

    table = home.cli("tasks", "state", "flow", DATE, check=True).stdout
    rows = [line.split()[:3] for line in table.splitlines()[3:]]
    assert {task: (state, tries) for task, state, tries in rows} == {
        "a": ("success", "1"), "b": ("success", "3"), "c": ("success", "2"), "d": ("success", "1"),
    }
    assert rows[0][0] == "a" and rows[-1][0] == "c"  # upstream before downstream


def test_clear_without_yes_asks_and_does_nothing_when_told_no(home: Home) -> None:
    flow_home(home)
    home.cli("dags", "trigger", "flow", "--date", DATE, check=True)
    home.cli("scheduler", "--until-idle", check=True)
    out = home.cli("tasks", "clear", "flow", input="n\n")
    assert out.returncode == 1
    assert "clear tasks in 1 run(s) of flow?" in out.stdout
    assert states(home)["a"] is TaskState.SUCCESS


def test_logs_of_each_try_after_a_retry(home: Home) -> None:
    home.write_dag("retrying.py", RETRY.format(mark=str(home.root / "mark")))
    home.cli("dags", "test", "retrying", DATE, check=True)
    first = home.cli("tasks", "logs", "retrying", "flaky", DATE, "--try", "1", check=True).stdout
    second = home.cli("tasks", "logs", "retrying", "flaky", DATE, "--try", "2", check=True).stdout
    latest = home.cli("tasks", "logs", "retrying", "flaky", DATE, check=True).stdout
    assert "first try fails on purpose" in first and "second try works" not in first
    assert "(failed, try 1 of 2)" in first.splitlines()[0]
    assert "second try works" in second and "first try fails on purpose" not in second
    assert latest == second
    missing = home.cli("tasks", "logs", "retrying", "flaky", DATE, "--try", "3")
    assert missing.returncode == 1
    assert "hint: its tries: 1, 2" in missing.stderr


def test_logs_outside_the_logs_folder_are_refused(home: Home) -> None:
    home.write_dag("retrying.py", RETRY.format(mark=str(home.root / "mark")))
    home.cli("dags", "test", "retrying", DATE, check=True)
    secret = home.root / "secret.txt"
    secret.write_text("do not show me")
    (home.settings.logs_folder / "sneaky.log").symlink_to(secret)
    run_id = "test__2024-05-01T00:00:00+00:00"
    tries = home.store.list_tries("retrying", run_id, "flaky")
    for bad in (str(secret), str(home.settings.logs_folder / ".." / "secret.txt"),
                str(home.settings.logs_folder / "sneaky.log")):
        home.store.commit(UnitOfWork(tries=[dataclasses.replace(tries[0], log_path=bad)]))
        out = home.cli("tasks", "logs", "retrying", "flaky", DATE, "--try", "1")
        assert out.returncode == 1, bad
        assert "outside the logs folder" in out.stderr
        assert "do not show me" not in out.stdout + out.stderr


def test_tasks_test_runs_one_task_and_records_nothing(home: Home) -> None:
    flow_home(home)
    out = home.cli("tasks", "test", "flow", "d", DATE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^d: success", out.stdout, re.M)
    assert "Starting flow.d" in out.stdout  # the try's log is shown
    assert counts(home) == {"d": 1}  # d only: its upstream a did not run
    assert home.store.list_runs() == []
    assert home.store.list_task_instances() == []

    failing = home.cli("tasks", "test", "flow", "b", DATE)
    assert failing.returncode == 1
    assert "b is broken until counts/fixed exists" in failing.stdout
    assert home.store.list_runs() == []


def test_logs_of_a_day_with_several_dags_test_runs_show_the_latest_and_say_so(home: Home) -> None:
    # `dags test DAG` without a date makes a run at the current time on every call, as Airflow's does.
    home.write_dag("retrying.py", RETRY.format(mark=str(home.root / "mark")))
    home.cli("dags", "test", "retrying", check=True)  # try 1 fails, try 2 works
    home.cli("dags", "test", "retrying", check=True)  # a second run: works at once
    first, second = sorted(home.store.list_runs("retrying"), key=lambda r: r.logical_date)
    day = first.logical_date.date().isoformat()
    if second.logical_date.date().isoformat() != day:
        pytest.skip("the two runs straddle midnight UTC")

    out = home.cli("tasks", "logs", "retrying", "flaky", day, check=True).stdout
    assert f"2 runs of retrying on {day}: the latest, {second.run_id}" in " ".join(out.split())
    assert "(success, try 1 of 1)" in out and "second try works" in out

    # A run id picks any run, the older one included; it says nothing about other runs.
    older = home.cli("tasks", "logs", "retrying", "flaky", first.run_id, check=True).stdout
    assert "(success, try 2 of 2)" in older and "runs of retrying" not in older
    tried = home.cli("tasks", "logs", "retrying", "flaky", first.run_id, "--try", "1", check=True).stdout
    assert "first try fails on purpose" in tried

    # tasks state takes the same day: the state alone on stdout, which run on stderr
    state = home.cli("tasks", "state", "retrying", "flaky", day, check=True)
    assert state.stdout.strip() == "success"
    assert f"2 runs of retrying on {day}: the latest, {second.run_id}" in " ".join(state.stderr.split())
    whole = home.cli("tasks", "state", "retrying", day, check=True)
    assert second.run_id in " ".join(whole.stdout.split()) and first.run_id not in whole.stdout

    nothing = home.cli("tasks", "logs", "retrying", "flaky", "2020-01-01")
    assert nothing.returncode == 1 and "has no run at 2020-01-01" in nothing.stderr
