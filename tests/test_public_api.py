"""The public surface of ``import headwater``: exactly these names, loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import headwater

PUBLIC = {
    # authoring
    "DAG",
    "dag",
    "task",
    "XComArg",
    "BaseOperator",
    "chain",
    "cross_downstream",
    "PythonOperator",
    "BashOperator",
    "EmptyOperator",
    "BranchPythonOperator",
    "ShortCircuitOperator",
    "TriggerRule",
    "Param",
    "TaskGroup",
    "task_group",
    # sensors
    "BaseSensorOperator",
    "PokeReturnValue",
    "TimeDeltaSensor",
    "DateTimeSensor",
    "FileSensor",
    "ExternalTaskSensor",
    "PythonSensor",
    # Luigi-style targets and tasks
    "Target",
    "LocalTarget",
    "FsspecTarget",
    "Task",
    "WrapperTask",
    "Parameter",
    "IntParameter",
    "FloatParameter",
    "BoolParameter",
    "DateParameter",
    "DateSecondParameter",
    "ListParameter",
    # errors
    "HeadwaterError",
    "TaskSkipError",
    "TaskFailNoRetryError",
    "TaskFailedError",
    "__version__",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(headwater.__all__) == PUBLIC
    assert len(headwater.__all__) == len(PUBLIC)
    assert set(headwater._EXPORTS) | {"__version__"} == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in headwater.__all__:
        assert getattr(headwater, name) is not None, name
    assert headwater.DAG.__module__ == "headwater.orchestration.dag"
    assert "DAG" in dir(headwater)


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        headwater.NotAThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NotAThing" in str(exc)
    else:
        raise AssertionError("headwater.NotAThing should not exist")


HEAVY = ("jinja2", "sqlalchemy", "fsspec", "alembic", "psycopg", "rich", "click", "polars", "msgspec")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    return [m for m in out.stdout.split() if m in HEAVY]


def test_import_headwater_is_cheap() -> None:
    assert _loaded_after("import headwater") == []


def test_authoring_a_dag_loads_no_heavy_dependency() -> None:
    code = """
import datetime as dt
from headwater import DAG, task, BashOperator, PythonOperator, LocalTarget, chain
with DAG("d", start_date=dt.datetime(2024, 1, 1), schedule="@daily") as d:
    @task
    def f():
        return 1
    chain(BashOperator(task_id="b", bash_command="echo {{ ds }}", outputs=LocalTarget("x/{{ ds }}")), f())
d.to_spec()
"""
    assert _loaded_after(code) == []
