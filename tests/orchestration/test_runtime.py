"""execute_workload end to end, in process: real DAG files in tmp_path, hand-built workloads."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest

from headwater.executor.base import RunInfo, TaskEvent, TaskKey, Workload
from headwater.orchestration.runtime import ALREADY_COMPLETE, execute_workload

HEADER = """
import datetime as dt
from headwater import (
    DAG, task, BashOperator, PythonOperator, EmptyOperator, BranchPythonOperator,
    ShortCircuitOperator, TaskSkipError, TaskFailNoRetryError,
)
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
"""

RUN = RunInfo(
    run_id="scheduled__2024-03-05",
    logical_date="2024-03-05T00:00:00+00:00",
    data_interval_start="2024-03-05T00:00:00+00:00",
    data_interval_end="2024-03-06T00:00:00+00:00",
    run_type="scheduled",
)


class Runner:
    """Writes DAG files and runs their tasks through execute_workload."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def dag_file(self, body: str, name: str | None = None) -> Path:
        self.count += 1
        path = self.root / (name or f"dag_{self.count}.py")
        path.write_text(HEADER + textwrap.dedent(body))
        return path

    def workload(self, path: Path, task_id: str, dag_id: str = "d", **kwargs: Any) -> Workload:
        kwargs.setdefault("run", RUN)
        return Workload(
            key=TaskKey(dag_id, kwargs["run"].run_id, task_id, kwargs.pop("try_number", 1)),
            fileloc=str(path),
            log_path=str(self.root / "logs" / f"{task_id}.log"),
            artifact_dir=str(self.root / "artifacts"),
            **kwargs,
        )

    def run(self, path: Path, task_id: str, **kwargs: Any) -> TaskEvent:
        event = execute_workload(self.workload(path, task_id, **kwargs))
        # every event must survive the trip back to the scheduler
        assert TaskEvent.from_json(event.to_json()) == event
        return event

    def log(self, task_id: str) -> str:
        return (self.root / "logs" / f"{task_id}.log").read_text()


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


# -- Python ------------------------------------------------------------------------


def test_python_success_pushes_the_return_value_inline(runner: Runner) -> None:
    path = runner.dag_file(
        """
        def work(ds, params, **kwargs):
            print("printed by the task")
            return {"ds": ds, "n": params["n"]}

        with DAG("d", start_date=START, params={"n": 1}) as d:
            PythonOperator(task_id="work", python_callable=work)
        """
    )
    event = runner.run(path, "work")
    assert event.state == "success"
    assert event.xcom == {"return_value": {"json": {"ds": "2024-03-05", "n": 1}}}
    assert event.pid == os.getpid() and event.hostname
    assert event.start is not None and event.end is not None and event.start <= event.end
    log = runner.log("work")
    assert "printed by the task" in log
    assert "Returned value was" in log


def test_task_output_does_not_reach_the_console(runner: Runner, capsys: pytest.CaptureFixture[str]) -> None:
    path = runner.dag_file(
        """
        import logging, sys
        def noisy():
            print("to stdout")
            print("to stderr", file=sys.stderr)
            logging.getLogger("user.module").warning("user warning")

        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="noisy", python_callable=noisy)
        """
    )
    assert runner.run(path, "noisy").state == "success"
    captured = capsys.readouterr()
    assert "to stdout" not in captured.out and "to stderr" not in captured.err
    log = runner.log("noisy")
    assert "to stdout" in log and "to stderr" in log and "user warning" in log


def test_python_failure_gives_a_one_line_reason_and_logs_the_traceback(runner: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "callback.txt"
    path = runner.dag_file(
        f"""
        def on_failure(context):
            __import__("pathlib").Path({str(marker)!r}).write_text(type(context["exception"]).__name__)

        def boom():
            raise ValueError("bad row 3\\nsecond line")

        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="boom", python_callable=boom, on_failure_callback=on_failure)
        """
    )
    event = runner.run(path, "boom")
    assert event.state == "failed"
    assert event.reason == "ValueError: bad row 3 second line"
    assert event.retryable
    assert "Traceback" in runner.log("boom") and 'raise ValueError("bad row 3' in runner.log("boom")
    assert marker.read_text() == "ValueError"


def test_retry_callback_runs_when_tries_are_left(runner: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "retry.txt"
    path = runner.dag_file(
        f"""
        def on_retry(context):
            __import__("pathlib").Path({str(marker)!r}).write_text("retry")

        def boom():
            raise RuntimeError("flaky")

        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="boom", python_callable=boom, retries=1, on_retry_callback=on_retry)
        """
    )
    event = runner.run(path, "boom", max_tries=2)
    assert (event.state, event.reason) == ("failed", "RuntimeError: flaky")
    assert marker.read_text() == "retry"


def test_very_long_reason_is_shortened(runner: Runner) -> None:
    path = runner.dag_file(
        """
        def boom():
            raise KeyError("x" * 5000)

        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="boom", python_callable=boom)
        """
    )
    event = runner.run(path, "boom")
    assert event.reason.startswith("KeyError: ")
    assert len(event.reason) <= 300


@pytest.mark.parametrize(
    ("raise_stmt", "state", "reason", "retryable"),
    [
        ('raise TaskSkipError("nothing new today")', "skipped", "nothing new today", True),
        ('raise TaskFailNoRetryError("input is corrupt")', "failed", "input is corrupt", False),
    ],
)
def test_control_exceptions_map_to_states(
    runner: Runner, raise_stmt: str, state: str, reason: str, retryable: bool
) -> None:
    path = runner.dag_file(
        f"""
        def control():
            {raise_stmt}

        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="control", python_callable=control)
        """
    )
    event = runner.run(path, "control")
    assert (event.state, event.reason, event.retryable) == (state, reason, retryable)


def test_reschedule_and_sensor_timeout(runner: Runner) -> None:
    path = runner.dag_file(
        """
        from headwater.errors import TaskReschedule, SensorTimeoutError
        from headwater import BaseOperator

        class Later(BaseOperator):
            def execute(self, context):
                raise TaskReschedule(1_900_000_000.0)

        class GiveUp(BaseOperator):
            def __init__(self, *, soft_fail=False, **kwargs):
                super().__init__(**kwargs)
                self.soft_fail = soft_fail

            def execute(self, context):
                raise SensorTimeoutError("waited 60s for the file")

        with DAG("d", start_date=START) as d:
            Later(task_id="later")
            GiveUp(task_id="hard")
            GiveUp(task_id="soft", soft_fail=True)
        """
    )
    later = runner.run(path, "later")
    assert (later.state, later.reschedule_at) == ("up_for_reschedule", 1_900_000_000.0)
    hard = runner.run(path, "hard")
    assert (hard.state, hard.reason, hard.retryable) == ("failed", "waited 60s for the file", False)
    assert runner.run(path, "soft").state == "skipped"


def test_execution_timeout_stops_the_task(runner: Runner) -> None:
    path = runner.dag_file(
        """
        import time
        def slow():
            time.sleep(30)

        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="slow", python_callable=slow, execution_timeout=0.3)
            BashOperator(task_id="slow_bash", bash_command="sleep 30", execution_timeout=0.3)
        """
    )
    for task_id in ("slow", "slow_bash"):
        event = runner.run(path, task_id)
        assert event.state == "failed"
        assert "timed out after 0.3s" in event.reason


def test_unknown_dag_and_task_fail_with_suggestions(runner: Runner) -> None:
    path = runner.dag_file(
        """
        with DAG("d", start_date=START) as d:
            EmptyOperator(task_id="transform")
        """
    )
    event = runner.run(path, "transfrom")
    assert event.state == "failed"
    assert "Did you mean 'transform'" in event.reason
    wrong_dag = execute_workload(runner.workload(path, "transform", dag_id="dd"))
    assert wrong_dag.state == "failed" and "Did you mean 'd'" in wrong_dag.reason


# -- Bash --------------------------------------------------------------------------


def test_bash_streams_output_and_returns_the_last_line(runner: Runner) -> None:
    path = runner.dag_file(
        """
        with DAG("d", start_date=START) as d:
            BashOperator(
                task_id="b",
                bash_command="echo first; echo oops >&2; echo last $GREETING {{ ds_nodash }}",
                env={"GREETING": "hi"},
                append_env=True,
            )
        """
    )
    event = runner.run(path, "b")
    assert event.state == "success"
    assert event.xcom["return_value"] == {"json": "last hi 20240305"}
    assert event.rendered["bash_command"].endswith("{{ ds_nodash }}".replace("{{ ds_nodash }}", "20240305"))
    log = runner.log("b")
    assert log.index("first") < log.index("oops") < log.index("last hi")


def test_bash_failure_and_skip_exit_codes(runner: Runner) -> None:
    path = runner.dag_file(
        """
        with DAG("d", start_date=START) as d:
            BashOperator(task_id="fail", bash_command="echo partial; exit 3")
            BashOperator(task_id="skip", bash_command="exit 99")
            BashOperator(task_id="custom", bash_command="exit 42", skip_on_exit_code=[42])
        """
    )
    fail = runner.run(path, "fail")
    assert (fail.state, fail.reason) == ("failed", "bash exited with code 3")
    assert "partial" in runner.log("fail")
    assert runner.run(path, "skip").state == "skipped"
    assert runner.run(path, "custom").state == "skipped"


def test_bash_script_file_next_to_the_dag_is_a_template(runner: Runner) -> None:
    (runner.root / "job.sh").write_text("echo running for {{ ds }} with {{ params.mode }}\n")
    path = runner.dag_file(
        """
        with DAG("d", start_date=START, params={"mode": "full"}) as d:
            BashOperator(task_id="script", bash_command="job.sh")
        """
    )
    event = runner.run(path, "script")
    assert event.state == "success", event.reason
    assert event.xcom["return_value"] == {"json": "running for 2024-03-05 with full"}


def test_bash_env_replaces_the_environment_unless_appended(runner: Runner) -> None:
    path = runner.dag_file(
        """
        with DAG("d", start_date=START) as d:
            BashOperator(task_id="b", bash_command='echo "[${HOME:-unset}] $HEADWATER_CTX_TASK_ID"', env={"X": "1"})
        """
    )
    assert runner.run(path, "b").xcom["return_value"] == {"json": "[unset] b"}


# -- XComs and TaskFlow --------------------------------------------------------------


def test_big_and_non_json_results_are_written_as_files(runner: Runner) -> None:
    path = runner.dag_file(
        """
        @task
        def big():
            return list(range(50_000))

        @task
        def typed():
            return (1, dt.date(2024, 1, 2))

        with DAG("d", start_date=START) as d:
            big()
            typed()
        """
    )
    event = runner.run(path, "big")
    ref = event.xcom["return_value"]
    assert ref["format"] == "json" and ref["size"] > 64 * 1024
    assert json.loads(Path(ref["ref"]).read_text()) == list(range(50_000))
    assert Path(ref["ref"]).parent.name == "big"
    typed = runner.run(path, "typed").xcom["return_value"]
    assert typed["format"] == "pickle"
    assert pickle.loads(Path(typed["ref"]).read_bytes()) == (1, __import__("datetime").date(2024, 1, 2))


def test_inline_limit_comes_from_the_workload(runner: Runner) -> None:
    path = runner.dag_file(
        """
        @task
        def small():
            return "x" * 100

        with DAG("d", start_date=START) as d:
            small()
        """
    )
    assert "json" in runner.run(path, "small").xcom["return_value"]
    assert "ref" in runner.run(path, "small", xcom_inline_limit=10).xcom["return_value"]


def test_taskflow_values_arrive_through_inputs(runner: Runner) -> None:
    path = runner.dag_file(
        """
        @task(multiple_outputs=True)
        def split():
            return {"even": [2, 4], "odd": [1, 3]}

        @task
        def load():
            return list(range(50_000))

        @task
        def combine(evens, odds, rows, *, ti=None):
            ti.xcom_push("extra", "pushed")
            return {"evens": evens, "odds": odds, "rows": len(rows)}

        with DAG("d", start_date=START) as d:
            parts = split()
            combine(parts["even"], odds=parts["odd"], rows=load())
        """
    )
    split_event = runner.run(path, "split")
    assert set(split_event.xcom) == {"even", "odd", "return_value"}
    load_event = runner.run(path, "load")  # big: a file reference
    event = runner.run(path, "combine", inputs={"split": split_event.xcom, "load": load_event.xcom})
    assert event.state == "success", event.reason
    assert event.xcom["return_value"] == {"json": {"evens": [2, 4], "odds": [1, 3], "rows": 50_000}}
    assert event.xcom["extra"] == {"json": "pushed"}
    assert event.rendered["op_args"] == "[[2, 4]]"


def test_missing_upstream_result_fails_clearly(runner: Runner) -> None:
    path = runner.dag_file(
        """
        @task
        def produce():
            return 1

        @task
        def consume(x):
            return x

        with DAG("d", start_date=START) as d:
            consume(produce())
        """
    )
    event = runner.run(path, "consume")
    assert event.state == "failed"
    assert "result 'return_value' of task 'produce' was not found" in event.reason


def test_do_xcom_push_false_and_none_results_push_nothing(runner: Runner) -> None:
    path = runner.dag_file(
        """
        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="quiet", python_callable=lambda: 5, do_xcom_push=False)
            PythonOperator(task_id="none", python_callable=lambda: None)
        """
    )
    assert runner.run(path, "quiet").xcom == {}
    assert runner.run(path, "none").xcom == {}


def test_xcom_pull_reads_the_metadata_store_when_not_in_inputs(runner: Runner, tmp_path: Path) -> None:
    from headwater.store.base import DagRunRecord, TaskInstanceRecord, UnitOfWork, XComRecord
    from headwater.store.sql import open_store

    url = f"sqlite:///{tmp_path / 'hw.db'}"
    store = open_store(url, create=True)
    import datetime as dt

    day = dt.datetime(2024, 3, 5, tzinfo=dt.UTC)
    store.create_run(
        DagRunRecord("d", RUN.run_id, day, day, day + dt.timedelta(days=1), "scheduled"),
        [TaskInstanceRecord("d", RUN.run_id, "produce")],
    )
    store.commit(UnitOfWork(xcoms=[XComRecord("d", RUN.run_id, "produce", "return_value", {"json": [7, 8]})]))
    store.close()
    path = runner.dag_file(
        """
        def consume(ti):
            return ti.xcom_pull(task_ids="produce") + ti.xcom_pull(task_ids=["produce", "nope"], default=[0])

        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="consume", python_callable=consume)
        """
    )
    event = runner.run(path, "consume", db_url=url)
    assert event.state == "success", event.reason
    assert event.xcom["return_value"] == {"json": [7, 8, [7, 8], [0]]}


# -- branching and short-circuits ------------------------------------------------------


def test_branch_skips_the_direct_downstream_tasks_not_chosen(runner: Runner) -> None:
    path = runner.dag_file(
        """
        with DAG("d", start_date=START) as d:
            branch = BranchPythonOperator(task_id="branch", python_callable=lambda ds: "weekday")
            weekday = EmptyOperator(task_id="weekday")
            weekend = EmptyOperator(task_id="weekend")
            after_weekend = EmptyOperator(task_id="after_weekend")
            join = EmptyOperator(task_id="join", trigger_rule="none_failed")
            branch >> [weekday, weekend]
            weekend >> after_weekend
            [weekday, after_weekend] >> join
            branch >> join
        """
    )
    event = runner.run(path, "branch")
    assert event.state == "success"
    assert event.skip == ("weekend",)  # join is downstream of the chosen branch: kept
    assert event.xcom["return_value"] == {"json": "weekday"}


def test_taskflow_branch_with_a_list_and_an_invalid_choice(runner: Runner) -> None:
    path = runner.dag_file(
        """
        @task.branch
        def pick(params):
            return params["choice"]

        with DAG("d", start_date=START, params={"choice": ["a", "b"]}) as d:
            pick() >> [EmptyOperator(task_id=x) for x in "abc"]
        """
    )
    assert runner.run(path, "pick").skip == ("c",)
    bad = runner.run(path, "pick", run=dataclasses.replace(RUN, conf={"choice": "zzz"}))
    assert bad.state == "failed" and "not in DAG 'd': zzz" in bad.reason


@pytest.mark.parametrize(("ignore", "skipped"), [(True, ("b", "c")), (False, ("b",))])
def test_short_circuit_skips_downstream(runner: Runner, ignore: bool, skipped: tuple[str, ...]) -> None:
    path = runner.dag_file(
        f"""
        with DAG("d", start_date=START) as d:
            gate = ShortCircuitOperator(
                task_id="gate", python_callable=lambda: [], ignore_downstream_trigger_rules={ignore}
            )
            gate >> EmptyOperator(task_id="b") >> EmptyOperator(task_id="c")
        """
    )
    event = runner.run(path, "gate")
    assert (event.state, event.skip) == ("success", skipped)


def test_short_circuit_truthy_skips_nothing(runner: Runner) -> None:
    path = runner.dag_file(
        """
        @task.short_circuit
        def gate():
            return True

        with DAG("d", start_date=START) as d:
            gate() >> EmptyOperator(task_id="b")
        """
    )
    assert runner.run(path, "gate").skip == ()


# -- outputs ---------------------------------------------------------------------------


def test_outputs_that_exist_make_the_task_complete_unless_forced(runner: Runner) -> None:
    out = str(runner.root / "out")
    path = runner.dag_file(
        f"""
        from headwater import LocalTarget

        def write(outputs):
            with outputs[0].open("w") as fh:
                fh.write("rows")
            print("wrote", outputs[0].path)

        with DAG("d", start_date=START) as d:
            PythonOperator(
                task_id="write",
                python_callable=write,
                outputs=LocalTarget({out!r} + "/{{{{ ds }}}}.txt"),
            )
        """
    )
    first = runner.run(path, "write")
    assert (first.state, first.reason) == ("success", "")
    assert (runner.root / "out" / "2024-03-05.txt").read_text() == "rows"
    assert "out/2024-03-05.txt" in first.rendered["outputs"]
    again = runner.run(path, "write")
    assert (again.state, again.reason) == ("success", ALREADY_COMPLETE)
    assert runner.log("write").count("wrote") == 1
    forced = runner.run(path, "write", force=True)
    assert (forced.state, forced.reason) == ("success", "")
    assert runner.log("write").count("wrote") == 2


def test_any_object_with_exists_and_render_is_an_output(runner: Runner) -> None:
    path = runner.dag_file(
        """
        class Flag:
            def __init__(self, value):
                self.value = value
            def exists(self):
                return self.value
            def render(self, context):
                return Flag(context["params"]["done"])

        with DAG("d", start_date=START, params={"done": True}) as d:
            PythonOperator(task_id="t", python_callable=lambda: 1, outputs=[Flag(False)])
        """
    )
    assert runner.run(path, "t").reason == ALREADY_COMPLETE
    conf = dataclasses.replace(RUN, conf={"done": False})
    assert runner.run(path, "t", run=conf).xcom == {"return_value": {"json": 1}}


# -- the DAG module cache -----------------------------------------------------------------


def test_dag_file_is_imported_once_per_version(runner: Runner) -> None:
    counter = runner.root / "imports.txt"
    body = f"""
        with open({str(counter)!r}, "a") as fh: fh.write("x")
        with DAG("d", start_date=START) as d:
            EmptyOperator(task_id="t")
        """
    path = runner.dag_file(body, name="cached.py")
    runner.run(path, "t")
    runner.run(path, "t")
    assert counter.read_text() == "x"
    path.write_text(path.read_text() + "\n# edited\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    runner.run(path, "t")
    assert counter.read_text() == "xx"


def test_concurrent_tries_on_threads_keep_their_logs_apart(runner: Runner) -> None:
    import threading

    path = runner.dag_file(
        """
        import logging, time
        def talk(name):
            for i in range(40):
                print(f"{name} line {i}")
                logging.getLogger("headwater.task").info("%s logged %d", name, i)
                time.sleep(0.001)

        with DAG("d", start_date=START) as d:
            PythonOperator(task_id="one", python_callable=talk, op_args=["one"])
            PythonOperator(task_id="two", python_callable=talk, op_args=["two"])
        """
    )
    events: dict[str, TaskEvent] = {}

    def work(task_id: str) -> None:
        events[task_id] = execute_workload(runner.workload(path, task_id))

    threads = [threading.Thread(target=work, args=(t,)) for t in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert {e.state for e in events.values()} == {"success"}
    one, two = runner.log("one"), runner.log("two")
    assert one.count("one line") == 40 and one.count("one logged") == 40
    assert two.count("two line") == 40 and two.count("two logged") == 40
    assert "two " not in one and "one " not in two
    import sys

    assert type(sys.stdout).__name__ != "_RoutingStream"  # restored once both finished
