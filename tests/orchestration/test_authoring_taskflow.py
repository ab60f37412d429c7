"""TaskFlow authoring: @task wiring, naming, XComArg dependencies, @dag."""

from __future__ import annotations

import datetime as dt

import pytest

from headwater.errors import DagDefinitionError
from headwater.orchestration.dag import DAG
from headwater.orchestration.operators import BashOperator, EmptyOperator
from headwater.orchestration.taskflow import DagParam, XComArg, dag, task

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@task
def extract() -> list[int]:
    return [1, 2, 3]


@task(retries=2)
def total(rows: list[int], *, scale: int = 1) -> int:
    return sum(rows) * scale


@task(multiple_outputs=True)
def split(rows: list[int]) -> dict[str, list[int]]:
    return {"even": [r for r in rows if r % 2 == 0], "odd": [r for r in rows if r % 2]}


def test_calling_tasks_wires_dependencies_through_arguments() -> None:
    with DAG("tf", start_date=START) as d:
        rows = extract()
        result = total(rows, scale=2)
    assert isinstance(rows, XComArg) and isinstance(result, XComArg)
    assert d.get_task("total").upstream_task_ids == {"extract"}
    assert d.get_task("total").retries == 2
    assert d.get_task("total").op_kwargs == {"scale": 2}
    assert d.to_spec().tasks["total"].operator == "@task"


def test_xcomargs_nested_in_lists_and_dicts_create_dependencies() -> None:
    @task
    def combine(parts: dict[str, object]) -> None:
        return None

    with DAG("tf", start_date=START) as d:
        a = extract.override(task_id="a")()
        b = extract.override(task_id="b")()
        combine({"all": [a, b], "one": a})
    assert d.get_task("combine").upstream_task_ids == {"a", "b"}


def test_repeated_calls_get_numbered_task_ids() -> None:
    with DAG("tf", start_date=START) as d:
        extract()
        extract()
        extract()
    assert d.task_ids == ["extract", "extract__1", "extract__2"]


def test_override_changes_task_arguments() -> None:
    with DAG("tf", start_date=START) as d:
        total.override(task_id="weekly_total", retries=5, pool="small")(extract())
    t = d.get_task("weekly_total")
    assert (t.retries, t.pool) == (5, "small")


def test_multiple_outputs_and_item_access() -> None:
    with DAG("tf", start_date=START) as d:
        parts = split(extract())
        evens = parts["even"]
        total(evens)
    assert d.get_task("split").multiple_outputs
    assert evens.key == "even" and evens.operator is parts.operator
    assert d.get_task("total").upstream_task_ids == {"split"}


def test_dict_return_annotation_implies_multiple_outputs() -> None:
    @task
    def stats() -> dict[str, int]:
        return {"n": 1}

    @task
    def plain() -> int:
        return 1

    with DAG("tf", start_date=START) as d:
        stats()
        plain()
    assert d.get_task("stats").multiple_outputs
    assert not d.get_task("plain").multiple_outputs


def test_xcomarg_works_with_shift_operators_on_both_sides() -> None:
    with DAG("tf", start_date=START) as d:
        start = EmptyOperator(task_id="start")
        rows = extract()
        end = EmptyOperator(task_id="end")
        start >> rows >> end
        [start] >> total(rows)
    assert d.get_task("extract").upstream_task_ids == {"start"}
    assert d.get_task("end").upstream_task_ids == {"extract"}
    assert d.get_task("total").upstream_task_ids == {"extract", "start"}


def test_xcomarg_in_a_classic_operator_template_field_is_a_dependency() -> None:
    with DAG("tf", start_date=START) as d:
        rows = extract()
        BashOperator(task_id="echo", bash_command=rows)
    assert d.get_task("echo").upstream_task_ids == {"extract"}


def test_xcomarg_cannot_be_iterated() -> None:
    with DAG("tf", start_date=START):
        rows = extract()
        with pytest.raises(TypeError, match="cannot be iterated"):
            list(rows)


def test_wrong_arguments_are_reported_at_definition() -> None:
    with DAG("tf", start_date=START), pytest.raises(DagDefinitionError, match="wrong arguments"):
        total(1, 2, 3)


def test_branch_and_short_circuit_decorators() -> None:
    @task.branch
    def pick() -> str:
        return "a"

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def gate() -> bool:
        return True

    with DAG("tf", start_date=START) as d:
        pick()
        gate()
    assert d.to_spec().tasks["pick"].operator == "@task.branch"
    assert d.get_task("gate").ignore_downstream_trigger_rules is False


def test_task_python_is_task() -> None:
    @task.python(task_id="named")
    def f() -> int:
        return 1

    with DAG("tf", start_date=START) as d:
        f()
    assert d.task_ids == ["named"]


def test_unknown_task_kind() -> None:
    with pytest.raises(AttributeError, match=r"no @task\.nope"):
        _ = task.nope


def test_dag_decorator_builds_a_dag_with_function_params_as_params() -> None:
    @dag(schedule=None, tags=["tf"])
    def my_pipeline(limit: int = 10, name: str = "x"):  # type: ignore[no-untyped-def]
        """Pipeline docs."""
        rows = extract()
        total(rows, scale=limit)

    built = my_pipeline(name="y")
    assert isinstance(built, DAG)
    assert built.dag_id == "my_pipeline"
    assert built.params == {"limit": 10, "name": "y"}
    assert built.tags == ["tf"]
    assert built.doc_md == "Pipeline docs."
    scale = built.get_task("total").op_kwargs["scale"]
    assert isinstance(scale, DagParam) and scale.name == "limit"


def test_dag_decorator_with_explicit_id_and_no_parentheses() -> None:
    @dag
    def bare():  # type: ignore[no-untyped-def]
        """No tasks: a daily DAG without start_date cannot hold any."""

    @dag("explicit_id", schedule=None)
    def other():  # type: ignore[no-untyped-def]
        extract()

    assert bare().dag_id == "bare"
    assert other().dag_id == "explicit_id"
