"""Sensors: poke and reschedule modes, timeouts, and the shipped sensors against real files and a real store."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from headwater.errors import DagDefinitionError, SensorTimeoutError, TaskFailNoRetryError, TaskReschedule
from headwater.executor.base import RunInfo, TaskKey, Workload
from headwater.orchestration.context import RuntimeTaskInstance, build_context
from headwater.orchestration.dag import DAG
from headwater.orchestration.sensors import (
    BaseSensorOperator,
    DateTimeSensor,
    ExternalTaskSensor,
    FileSensor,
    PokeReturnValue,
    PythonSensor,
    TimeDeltaSensor,
)
from headwater.orchestration.states import RunState, TaskState

UTC = dt.UTC
FAST: dict[str, Any] = {"poke_interval": 0.05, "timeout": 5}


class CountingSensor(BaseSensorOperator):
    """True from the ``done_at``-th poke on."""

    def __init__(self, *, done_at: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.done_at = done_at
        self.pokes = 0

    def poke(self, context: Any) -> bool:
        self.pokes += 1
        return self.pokes >= self.done_at


def make_context(
    task: BaseSensorOperator,
    *,
    logical: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=UTC),
    interval_end: dt.datetime | None = None,
    sensor_started_at: dt.datetime | None = None,
    db_url: str = "",
) -> dict[str, Any]:
    """A real try context, built the way the runtime builds it from a workload."""
    end = interval_end or logical + dt.timedelta(days=1)
    workload = Workload(
        key=TaskKey(task.dag.dag_id, "manual__1", task.task_id, 1),
        fileloc="",
        run=RunInfo("manual__1", logical.isoformat(), logical.isoformat(), end.isoformat()),
        log_path="",
        artifact_dir="",
        db_url=db_url,
        sensor_started_at=sensor_started_at.isoformat() if sensor_started_at else None,
    )
    return build_context(task, task.dag, workload, RuntimeTaskInstance(task, workload))


@pytest.fixture
def dag() -> DAG:
    return DAG("sensing", schedule=None)


def test_poke_mode_pokes_until_true(dag: DAG) -> None:
    sensor = CountingSensor(task_id="count", done_at=3, dag=dag, **FAST)
    assert sensor.execute(make_context(sensor)) is None
    assert sensor.pokes == 3


def test_poke_mode_times_out_with_a_message(dag: DAG) -> None:
    sensor = CountingSensor(task_id="never", done_at=10**9, dag=dag, poke_interval=0.05, timeout=0.2)
    with pytest.raises(SensorTimeoutError) as info:
        sensor.execute(make_context(sensor))
    text = str(info.value)
    assert "sensor 'never' waited" in text
    assert "for CountingSensor.poke() to return true and timed out (timeout 0.2s)" in text
    assert sensor.pokes >= 2


def test_soft_fail_still_raises_timeout_and_says_so_in_the_spec(dag: DAG) -> None:
    sensor = CountingSensor(task_id="soft", done_at=10**9, dag=dag, poke_interval=0.05, timeout=0.1, soft_fail=True)
    with pytest.raises(SensorTimeoutError):
        sensor.execute(make_context(sensor))
    spec = sensor.to_spec()
    assert spec.soft_fail and spec.is_sensor
    assert (spec.sensor_mode, spec.poke_interval, spec.sensor_timeout) == ("poke", 0.05, 0.1)


def test_spec_takes_timedeltas_and_defaults(dag: DAG) -> None:
    sensor = CountingSensor(task_id="td", done_at=1, dag=dag, poke_interval=dt.timedelta(minutes=2), mode="reschedule")
    spec = sensor.to_spec()
    assert (spec.poke_interval, spec.sensor_timeout, spec.sensor_mode) == (120.0, 7 * 24 * 3600.0, "reschedule")


def test_bad_mode_is_a_definition_error(dag: DAG) -> None:
    with pytest.raises(DagDefinitionError, match="has mode 'sleep'"):
        CountingSensor(task_id="bad", done_at=1, dag=dag, mode="sleep")


def test_reschedule_mode_pokes_once_and_asks_for_the_next_poke(dag: DAG) -> None:
    sensor = CountingSensor(task_id="resched", done_at=2, dag=dag, mode="reschedule", poke_interval=30, timeout=600)
    before = time.time()
    with pytest.raises(TaskReschedule) as info:
        sensor.execute(make_context(sensor))  # first poke: no sensor_started_at yet
    after = time.time()
    assert sensor.pokes == 1
    assert before + 30 <= info.value.reschedule_at <= after + 30
    started = dt.datetime.now(UTC) - dt.timedelta(seconds=60)
    assert sensor.execute(make_context(sensor, sensor_started_at=started)) is None
    assert sensor.pokes == 2


def test_reschedule_mode_times_out_from_the_first_poke(dag: DAG) -> None:
    sensor = CountingSensor(task_id="late", done_at=10**9, dag=dag, mode="reschedule", poke_interval=30, timeout=60)
    started = dt.datetime.now(UTC) - dt.timedelta(seconds=61)
    with pytest.raises(SensorTimeoutError, match=r"sensor 'late' waited 6\ds"):
        sensor.execute(make_context(sensor, sensor_started_at=started))
    # Near the deadline, the next poke is at the deadline, not a full interval later.
    started = dt.datetime.now(UTC) - dt.timedelta(seconds=50)
    with pytest.raises(TaskReschedule) as info:
        sensor.execute(make_context(sensor, sensor_started_at=started))
    assert info.value.reschedule_at == pytest.approx(started.timestamp() + 60, abs=0.01)


def test_exponential_backoff_doubles_the_wait_up_to_max_wait(dag: DAG) -> None:
    sensor = CountingSensor(task_id="exp", done_at=1, dag=dag, poke_interval=10, exponential_backoff=True, max_wait=50)
    assert [sensor.next_wait(n) for n in range(1, 6)] == [10, 20, 40, 50, 50]
    plain = CountingSensor(task_id="flat", done_at=1, dag=dag, poke_interval=10)
    assert [plain.next_wait(n) for n in range(1, 4)] == [10, 10, 10]


def test_poke_return_value_becomes_the_result(dag: DAG) -> None:
    def ready() -> PokeReturnValue:
        return PokeReturnValue(True, {"rows": 3})

    sensor = PythonSensor(task_id="with_value", python_callable=ready, dag=dag, **FAST)
    assert sensor.execute(make_context(sensor)) == {"rows": 3}


def test_python_sensor_passes_args_and_context(dag: DAG) -> None:
    seen: list[Any] = []

    def check(threshold: int, ds: str, *, extra: str) -> bool:
        seen.append((threshold, ds, extra))
        return len(seen) >= 2

    sensor = PythonSensor(task_id="py", python_callable=check, op_args=[5], op_kwargs={"extra": "x"}, dag=dag, **FAST)
    sensor.execute(make_context(sensor))
    assert seen == [(5, "2024-01-01", "x")] * 2
    assert "op_kwargs" in PythonSensor.template_fields


def test_file_sensor_sees_a_file_appear(dag: DAG, tmp_path: Path) -> None:
    target = tmp_path / "incoming" / "data_2024.csv"
    sensor = FileSensor(task_id="file", filepath=str(tmp_path / "incoming" / "data_*.csv"), dag=dag, **FAST)
    assert sensor.poke(make_context(sensor)) is False

    def drop() -> None:
        time.sleep(0.15)
        target.parent.mkdir(parents=True)
        target.write_text("a,b\n")

    writer = threading.Thread(target=drop)
    writer.start()
    sensor.execute(make_context(sensor))
    writer.join()
    assert target.exists()


def test_file_sensor_folders_count_when_they_hold_files(dag: DAG, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    sensor = FileSensor(task_id="folder", filepath=str(folder), dag=dag)
    assert not sensor.poke({})
    (folder / "sub").mkdir()
    (folder / "sub" / "part-0").write_text("")
    assert sensor.poke({})
    deep = FileSensor(task_id="deep", filepath=str(tmp_path / "**" / "part-*"), recursive=True, dag=dag)
    assert deep.poke({})


def test_file_sensor_timeout_names_the_pattern(dag: DAG, tmp_path: Path) -> None:
    sensor = FileSensor(task_id="nofile", filepath=str(tmp_path / "x.csv"), dag=dag, poke_interval=0.05, timeout=0.1)
    with pytest.raises(SensorTimeoutError, match=f"for a file matching {tmp_path}/x.csv"):
        sensor.execute(make_context(sensor))


def test_file_sensor_with_an_fsspec_url(dag: DAG) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    sensor = FileSensor(task_id="mem", filepath="memory://sensor-test/part-*.parquet", dag=dag)
    assert not sensor.poke({})
    fs.pipe("/sensor-test/part-0.parquet", b"x")
    try:
        assert sensor.poke({})
    finally:
        fs.rm("/sensor-test", recursive=True)


def test_time_delta_sensor_waits_past_the_interval_end(dag: DAG) -> None:
    sensor = TimeDeltaSensor(task_id="delta", delta=dt.timedelta(hours=1), dag=dag, mode="reschedule")
    past = dt.datetime.now(UTC) - dt.timedelta(hours=2)
    assert sensor.execute(make_context(sensor, logical=past - dt.timedelta(days=1), interval_end=past)) is None
    soon = dt.datetime.now(UTC)
    with pytest.raises(TaskReschedule):
        sensor.execute(make_context(sensor, logical=soon - dt.timedelta(days=1), interval_end=soon))


def test_date_time_sensor_renders_and_compares(dag: DAG) -> None:
    sensor = DateTimeSensor(task_id="dts", target_time="{{ data_interval_end }}", dag=dag)
    assert DateTimeSensor.template_fields == ("target_time",)
    sensor.target_time = "2000-01-01T00:00:00"  # as the runtime leaves it after rendering
    assert sensor.poke({})
    future = DateTimeSensor(task_id="future", target_time=dt.datetime.now(UTC) + dt.timedelta(days=1), dag=dag)
    assert not future.poke({})
    broken = DateTimeSensor(task_id="broken", target_time="tomorrow", dag=dag)
    with pytest.raises(TaskFailNoRetryError, match="'tomorrow' is not an ISO 8601 time"):
        broken.poke({})


# -- ExternalTaskSensor against a real SQLite store -----------------------------


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    from headwater.store.sql import open_store

    url = f"sqlite:///{tmp_path / 'meta.db'}"
    open_store(url, create=True).close()
    return url


def _external_run(url: str, state: TaskState, *, logical: dt.datetime, run_state: RunState = RunState.RUNNING) -> None:
    from headwater.store.base import DagRunRecord, TaskInstanceRecord, UnitOfWork
    from headwater.store.sql import open_store

    store = open_store(url)
    try:
        existing = store.find_run("upstream_dag", logical)
        if existing is None:
            run = DagRunRecord(
                dag_id="upstream_dag",
                run_id=f"scheduled__{logical.isoformat()}",
                logical_date=logical,
                data_interval_start=logical,
                data_interval_end=logical + dt.timedelta(days=1),
                run_type="scheduled",
                state=run_state,
            )
            store.create_run(run, [TaskInstanceRecord("upstream_dag", run.run_id, "load", state=state)])
        else:
            existing.state = run_state
            ti = store.get_task_instance("upstream_dag", existing.run_id, "load")
            assert ti is not None
            ti.state = state
            store.commit(UnitOfWork(task_instances=[ti], runs=[existing]))
    finally:
        store.close()


def test_external_task_sensor_waits_for_the_other_dag(dag: DAG, store_url: str) -> None:
    day = dt.datetime(2024, 3, 1, tzinfo=UTC)
    sensor = ExternalTaskSensor(
        task_id="wait_load", external_dag_id="upstream_dag", external_task_id="load", dag=dag, **FAST
    )
    ctx = make_context(sensor, logical=day, db_url=store_url)
    assert sensor.poke(ctx) is False  # no run yet
    _external_run(store_url, TaskState.RUNNING, logical=day)
    assert sensor.poke(ctx) is False
    _external_run(store_url, TaskState.SUCCESS, logical=day)
    assert sensor.execute(ctx) is None


def test_external_task_sensor_execution_delta_and_whole_run(dag: DAG, store_url: str) -> None:
    day = dt.datetime(2024, 3, 2, tzinfo=UTC)
    _external_run(store_url, TaskState.SUCCESS, logical=day - dt.timedelta(hours=1), run_state=RunState.SUCCESS)
    by_delta = ExternalTaskSensor(
        task_id="delta", external_dag_id="upstream_dag", execution_delta=dt.timedelta(hours=1), dag=dag
    )
    assert by_delta.poke(make_context(by_delta, logical=day, db_url=store_url))

    def previous_hour(logical: dt.datetime, context: dict[str, Any]) -> dt.datetime:
        assert context["ds"] == "2024-03-02"
        return logical - dt.timedelta(hours=1)

    by_fn = ExternalTaskSensor(
        task_id="fn", external_dag_id="upstream_dag", external_task_id="load", execution_date_fn=previous_hour, dag=dag
    )
    assert by_fn.poke(make_context(by_fn, logical=day, db_url=store_url))


def test_external_task_sensor_failed_states_fail_without_retry(dag: DAG, store_url: str) -> None:
    day = dt.datetime(2024, 3, 3, tzinfo=UTC)
    _external_run(store_url, TaskState.FAILED, logical=day)
    sensor = ExternalTaskSensor(
        task_id="guard",
        external_dag_id="upstream_dag",
        external_task_id="load",
        failed_states=["failed", "upstream_failed"],
        dag=dag,
        **FAST,
    )
    with pytest.raises(TaskFailNoRetryError, match=r"task 'load' in the run of DAG 'upstream_dag' .* is failed"):
        sensor.execute(make_context(sensor, logical=day, db_url=store_url))


def test_external_task_sensor_times_out_naming_what_it_waited_for(dag: DAG, store_url: str) -> None:
    sensor = ExternalTaskSensor(
        task_id="absent", external_dag_id="upstream_dag", dag=dag, poke_interval=0.05, timeout=0.1
    )
    with pytest.raises(SensorTimeoutError, match=r"for the run of DAG 'upstream_dag' at 2024-01-01T00:00:00"):
        sensor.execute(make_context(sensor, db_url=store_url))


def test_external_task_sensor_checks_its_arguments(dag: DAG) -> None:
    with pytest.raises(DagDefinitionError, match="unknown task states"):
        ExternalTaskSensor(task_id="a", external_dag_id="x", external_task_id="t", allowed_states=["done"], dag=dag)
    with pytest.raises(DagDefinitionError, match="in both allowed_states and failed_states"):
        ExternalTaskSensor(task_id="b", external_dag_id="x", failed_states=["success"], dag=dag)
    with pytest.raises(DagDefinitionError, match="both execution_delta and execution_date_fn"):
        ExternalTaskSensor(
            task_id="c",
            external_dag_id="x",
            execution_delta=dt.timedelta(1),
            execution_date_fn=lambda d: d,
            dag=dag,
        )
    sensor = ExternalTaskSensor(task_id="d", external_dag_id="x", dag=dag)
    with pytest.raises(TaskFailNoRetryError, match="has no db_url"):
        sensor.poke(make_context(sensor))


def test_task_sensor_decorator_makes_a_sensor(dag: DAG, tmp_path: Path) -> None:
    from headwater.orchestration.taskflow import task

    flag = tmp_path / "ready"

    @task.sensor(poke_interval=0.05, timeout=5, mode="poke")
    def wait_for_flag(path: str) -> PokeReturnValue:
        return PokeReturnValue(Path(path).exists(), xcom_value=path)

    with dag:
        wait_for_flag(str(flag))
    sensor = dag.get_task("wait_for_flag")
    assert isinstance(sensor, BaseSensorOperator)
    assert sensor.to_spec().is_sensor and sensor.to_spec().operator == "@task.sensor"
    flag.write_text("")
    assert sensor.execute(make_context(sensor)) == str(flag)


@pytest.mark.slow
def test_reschedule_sensors_through_the_scheduler(home: Any) -> None:
    """Reschedule-mode sensors run by the real scheduler: one succeeds once a file appears, one soft-fails."""
    flag = home.root / "flag.txt"
    home.write_dag(
        "sensing.py",
        f"""
        import datetime as dt
        from headwater import DAG, FileSensor, PythonOperator

        with DAG("sensing", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
            wait = FileSensor(task_id="wait", filepath={str(flag)!r}, mode="reschedule",
                              poke_interval=0.2, timeout=60)
            never = FileSensor(task_id="never", filepath={str(home.root / "nope")!r}, mode="reschedule",
                               poke_interval=0.2, timeout=0.5, soft_fail=True)
            done = PythonOperator(task_id="done", python_callable=lambda: "ok")
            wait >> done
        """,
    )

    def drop() -> None:
        time.sleep(1.0)
        flag.write_text("x")

    writer = threading.Thread(target=drop)
    writer.start()
    out = home.cli("dags", "test", "sensing")
    writer.join()
    assert out.returncode == 0, out.stdout + out.stderr
    states = {ti.task_id: ti for ti in home.store.list_task_instances("sensing")}
    assert {tid: ti.state for tid, ti in states.items()} == {
        "wait": TaskState.SUCCESS,
        "never": TaskState.SKIPPED,
        "done": TaskState.SUCCESS,
    }
    assert "timed out (timeout 0.5s)" in states["never"].reason
    assert states["wait"].try_number == 1  # pokes after a reschedule continue the same try
