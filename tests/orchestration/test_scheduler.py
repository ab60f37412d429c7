"""The scheduler end to end: real DAG files, real SQLite, real worker processes."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from headwater.clock import FakeClock
from headwater.executor.inline import InlineExecutor
from headwater.executor.local import LocalExecutor
from headwater.orchestration.runs import trigger
from headwater.orchestration.scheduler import Scheduler, SchedulerOptions
from headwater.orchestration.states import RunState, TaskState

from .conftest import Home

U = dt.UTC


def run_scheduler(home: Home, executor=None, clock=None, **opts) -> Scheduler:  # type: ignore[no-untyped-def]
    opts.setdefault("until_idle", True)
    opts.setdefault("heartbeat", 0.2)
    s = Scheduler(home.store, executor or InlineExecutor(), home.settings, SchedulerOptions(**opts),
                  clock=clock, refresh_dags=home.refresh)
    s.run()
    return s


DAILY = """
    import datetime as dt
    from headwater import DAG, PythonOperator

    with DAG("daily", schedule="@daily", start_date=dt.datetime(2024, 1, 1), catchup={catchup},
             max_active_runs={mar}) as dag:
        PythonOperator(task_id="a", python_callable=lambda ds: print("day", ds)) >> \\
            PythonOperator(task_id="b", python_callable=lambda: None)
"""


def test_catchup_creates_a_run_per_elapsed_interval(home: Home) -> None:
    home.write_dag("daily.py", DAILY.format(catchup=True, mar=16))
    clock = FakeClock(dt.datetime(2024, 1, 4, 3, tzinfo=U))
    run_scheduler(home, clock=clock)
    runs = home.store.list_runs("daily", newest_first=False)
    assert [r.logical_date.day for r in runs] == [1, 2, 3]
    assert all(r.state is RunState.SUCCESS for r in runs)
    assert all(r.run_type == "scheduled" for r in runs)


def test_without_catchup_only_the_latest_interval_runs(home: Home) -> None:
    home.write_dag("daily.py", DAILY.format(catchup=False, mar=16))
    run_scheduler(home, clock=FakeClock(dt.datetime(2024, 1, 4, 3, tzinfo=U)))
    runs = home.store.list_runs("daily")
    assert [(r.logical_date.day, r.state) for r in runs] == [(3, RunState.SUCCESS)]


def test_max_active_runs_one_runs_catchup_runs_one_after_another(home: Home) -> None:
    home.write_dag("daily.py", DAILY.format(catchup=True, mar=1))
    run_scheduler(home, executor=LocalExecutor(parallelism=2),
                  clock=FakeClock(dt.datetime(2024, 1, 6, 3, tzinfo=U)))
    runs = home.store.list_runs("daily", newest_first=False)
    assert len(runs) == 5 and all(r.state is RunState.SUCCESS for r in runs)
    spans = []
    for r in runs:
        tis = home.store.list_task_instances("daily", r.run_id)
        spans.append((min(t.start_date for t in tis), max(t.end_date for t in tis)))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start  # never two runs at once


def test_retries_with_backoff_then_success(home: Home, tmp_path: Path) -> None:
    counter = tmp_path / "tries.txt"
    home.write_dag("flaky.py", f"""
        import datetime as dt
        from pathlib import Path
        from headwater import DAG, PythonOperator

        def flaky():
            p = Path({str(counter)!r})
            n = len(p.read_text()) if p.exists() else 0
            p.write_text("x" * (n + 1))
            if n < 2:
                raise ValueError(f"try {{n + 1}} fails")

        with DAG("flaky", schedule=None, start_date=dt.datetime(2024, 1, 1)):
            PythonOperator(task_id="flaky", python_callable=flaky, retries=3,
                           retry_delay=dt.timedelta(seconds=30), retry_exponential_backoff=True)
    """)
    home.refresh()
    clock = FakeClock(dt.datetime(2024, 2, 1, tzinfo=U))
    started = clock.now()
    run = trigger(home.store, home.store.get_dag("flaky"), started)
    run_scheduler(home, clock=clock, heartbeat=5.0)
    ti = home.store.get_task_instance("flaky", run.run_id, "flaky")
    assert ti.state is TaskState.SUCCESS and ti.try_number == 3
    tries = home.store.list_tries("flaky", run.run_id, "flaky")
    assert [t.state for t in tries] == [TaskState.FAILED, TaskState.FAILED, TaskState.SUCCESS]
    assert "ValueError: try 1 fails" in tries[0].reason
    # 30 s then 60 s of exponential backoff passed on the scheduler's (fake) clock.
    assert clock.now() - started >= dt.timedelta(seconds=90)
    assert all(Path(t.log_path).is_file() for t in tries)  # a log per try
    assert counter.read_text() == "xxx"


def test_execution_timeout_kills_the_task_and_fails_the_try(home: Home) -> None:
    home.write_dag("slow.py", """
        import datetime as dt
        from headwater import DAG, BashOperator
        with DAG("slow", schedule=None, start_date=dt.datetime(2024, 1, 1)):
            BashOperator(task_id="sleepy", bash_command="sleep 30", execution_timeout=dt.timedelta(seconds=1))
    """)
    home.refresh()
    run = trigger(home.store, home.store.get_dag("slow"), dt.datetime.now(U))
    run_scheduler(home, executor=LocalExecutor(parallelism=1))
    ti = home.store.get_task_instance("slow", run.run_id, "sleepy")
    assert ti.state is TaskState.FAILED
    assert "timed out" in ti.reason


def test_pool_with_one_slot_serialises_its_tasks(home: Home, tmp_path: Path) -> None:
    home.store.set_pool("single", 1, "one at a time")
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    home.write_dag("pooled.py", f"""
        import datetime as dt, time
        from pathlib import Path
        from headwater import DAG, PythonOperator

        def work(name):
            start = time.time()
            time.sleep(0.3)
            Path({str(stamps)!r}, name).write_text(f"{{start}} {{time.time()}}")

        with DAG("pooled", schedule=None, start_date=dt.datetime(2024, 1, 1)):
            for i in range(3):
                PythonOperator(task_id=f"t{{i}}", python_callable=work, op_args=[f"t{{i}}"], pool="single")
    """)
    home.refresh()
    run = trigger(home.store, home.store.get_dag("pooled"), dt.datetime.now(U))
    run_scheduler(home, executor=LocalExecutor(parallelism=2))
    assert home.store.get_run("pooled", run.run_id).state is RunState.SUCCESS
    spans = sorted(tuple(map(float, p.read_text().split())) for p in stamps.iterdir())
    assert len(spans) == 3
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start


def test_missing_pool_fails_the_task_with_a_hint(home: Home) -> None:
    home.write_dag("nopool.py", """
        import datetime as dt
        from headwater import DAG, EmptyOperator
        with DAG("nopool", schedule=None, start_date=dt.datetime(2024, 1, 1)):
            EmptyOperator(task_id="t", pool="gpu")
    """)
    home.refresh()
    run = trigger(home.store, home.store.get_dag("nopool"), dt.datetime.now(U))
    run_scheduler(home)
    ti = home.store.get_task_instance("nopool", run.run_id, "t")
    assert ti.state is TaskState.FAILED and "headwater pools set gpu" in ti.reason


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_modes(home: Home, tmp_path: Path, mode: str) -> None:
    pokes = tmp_path / "pokes.txt"
    home.write_dag("sensing.py", f"""
        import datetime as dt
        from pathlib import Path
        from headwater import DAG, PythonSensor, EmptyOperator

        def third_time_lucky():
            p = Path({str(pokes)!r})
            n = len(p.read_text()) if p.exists() else 0
            p.write_text("x" * (n + 1))
            return n >= 2

        with DAG("sensing", schedule=None, start_date=dt.datetime(2024, 1, 1)):
            PythonSensor(task_id="wait", python_callable=third_time_lucky, poke_interval=0.05,
                         timeout=30, mode={mode!r}) >> EmptyOperator(task_id="after")
    """)
    home.refresh()
    run = trigger(home.store, home.store.get_dag("sensing"), dt.datetime.now(U))
    run_scheduler(home, executor=LocalExecutor(parallelism=1))
    ti = home.store.get_task_instance("sensing", run.run_id, "wait")
    assert ti.state is TaskState.SUCCESS and ti.try_number == 1
    assert pokes.read_text() == "xxx"
    assert home.store.get_task_instance("sensing", run.run_id, "after").state is TaskState.SUCCESS


def test_sensor_timeout_with_soft_fail_skips_downstream(home: Home) -> None:
    home.write_dag("never.py", """
        import datetime as dt
        from headwater import DAG, PythonSensor, EmptyOperator
        with DAG("never", schedule=None, start_date=dt.datetime(2024, 1, 1)):
            PythonSensor(task_id="wait", python_callable=lambda: False, poke_interval=0.05, timeout=0.3,
                         mode="reschedule", soft_fail=True) >> EmptyOperator(task_id="after")
    """)
    home.refresh()
    run = trigger(home.store, home.store.get_dag("never"), dt.datetime.now(U))
    run_scheduler(home, executor=LocalExecutor(parallelism=1))
    states = {t.task_id: t.state for t in home.store.list_task_instances("never", run.run_id)}
    assert states == {"wait": TaskState.SKIPPED, "after": TaskState.SKIPPED}


def test_taskflow_values_cross_worker_processes(home: Home) -> None:
    home.write_dag("flow.py", """
        import datetime as dt
        from headwater import dag, task

        @dag(schedule=None, start_date=dt.datetime(2024, 1, 1))
        def flow():
            @task
            def extract():
                return {"rows": [1, 2, 3]}

            @task
            def big():
                return "y" * 200_000

            @task
            def load(data, blob):
                return sum(data["rows"]) + len(blob)

            load(extract(), big())

        flow()
    """)
    home.refresh()
    run = trigger(home.store, home.store.get_dag("flow"), dt.datetime.now(U))
    run_scheduler(home, executor=LocalExecutor(parallelism=2))
    assert home.store.get_run("flow", run.run_id).state is RunState.SUCCESS
    (result,) = home.store.get_xcoms("flow", run.run_id, ["load"], "return_value")
    assert result.value == {"json": 6 + 200_000}
    (blob,) = home.store.get_xcoms("flow", run.run_id, ["big"], "return_value")
    assert "ref" in blob.value and Path(blob.value["ref"]).is_file()  # large values live in files


def test_branching_skips_the_branch_not_taken(home: Home) -> None:
    home.write_dag("branchy.py", """
        import datetime as dt
        from headwater import DAG, BranchPythonOperator, EmptyOperator, ShortCircuitOperator
        with DAG("branchy", schedule=None, start_date=dt.datetime(2024, 1, 1)):
            pick = BranchPythonOperator(task_id="pick", python_callable=lambda: "left")
            left, right = EmptyOperator(task_id="left"), EmptyOperator(task_id="right")
            join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
            stop = ShortCircuitOperator(task_id="stop", python_callable=lambda: False)
            pick >> [left, right] >> join >> stop >> EmptyOperator(task_id="never")
    """)
    home.refresh()
    run = trigger(home.store, home.store.get_dag("branchy"), dt.datetime.now(U))
    run_scheduler(home)
    states = {t.task_id: t.state.value for t in home.store.list_task_instances("branchy", run.run_id)}
    assert states == {"pick": "success", "left": "success", "right": "skipped", "join": "success",
                      "stop": "success", "never": "skipped"}
    assert home.store.get_run("branchy", run.run_id).state is RunState.SUCCESS


def test_depends_on_past_blocks_after_a_failure(home: Home) -> None:
    home.write_dag("past.py", """
        import datetime as dt
        from headwater import DAG, PythonOperator

        def maybe_fail(ds):
            if ds == "2024-01-02":
                raise RuntimeError("bad day")

        with DAG("past", schedule="@daily", start_date=dt.datetime(2024, 1, 1), catchup=True,
                 default_args={"depends_on_past": True}):
            PythonOperator(task_id="t", python_callable=maybe_fail)
    """)
    s = run_scheduler(home, clock=FakeClock(dt.datetime(2024, 1, 5, 1, tzinfo=U)))
    got = {r.logical_date.day: r.state for r in home.store.list_runs("past")}
    assert got[1] is RunState.SUCCESS and got[2] is RunState.FAILED
    assert got[3] is RunState.RUNNING  # waits on the failed day 2, reported as stuck
    assert s.report.stuck


def test_dagrun_timeout_fails_the_run_skips_waiting_tasks_and_kills_running_ones(home: Home) -> None:
    home.write_dag("slow_run.py", """
        import datetime as dt
        from headwater import DAG, BashOperator, EmptyOperator, PythonSensor
        with DAG("slow_run", schedule=None, start_date=dt.datetime(2024, 1, 1),
                 dagrun_timeout=dt.timedelta(seconds=1), default_args={"retries": 2}):
            PythonSensor(task_id="never", python_callable=lambda: False, poke_interval=5, timeout=60,
                         mode="reschedule") >> EmptyOperator(task_id="after_never")
            BashOperator(task_id="sleepy", bash_command="sleep 30") >> EmptyOperator(task_id="after_sleepy")
    """)
    home.refresh()
    assert home.store.get_dag("slow_run").spec.dagrun_timeout == 1.0
    run = trigger(home.store, home.store.get_dag("slow_run"), dt.datetime.now(U))
    run_scheduler(home, executor=LocalExecutor(parallelism=2))
    assert home.store.get_run("slow_run", run.run_id).state is RunState.FAILED
    tis = {t.task_id: t for t in home.store.list_task_instances("slow_run", run.run_id)}
    assert tis["sleepy"].state is TaskState.FAILED and tis["sleepy"].try_number == 1  # killed, not retried
    assert "timed out" in tis["sleepy"].reason
    for tid in ("never", "after_never", "after_sleepy"):
        assert tis[tid].state is TaskState.SKIPPED and "dagrun_timeout" in tis[tid].reason
