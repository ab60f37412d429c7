"""Task groups: prefixed ids, nesting, dependencies on a group's roots and leaves, default_args, the spec."""

from __future__ import annotations

import datetime as dt

import pytest

from headwater.errors import DagDefinitionError
from headwater.orchestration.baseoperator import chain
from headwater.orchestration.dag import DAG
from headwater.orchestration.operators import EmptyOperator
from headwater.orchestration.spec import DagSpec
from headwater.orchestration.taskflow import task
from headwater.orchestration.taskgroup import TaskGroup, task_group
from tests.orchestration.conftest import Home

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def upstream(dag: DAG) -> dict[str, list[str]]:
    return {tid: sorted(t.upstream_task_ids) for tid, t in dag.task_dict.items()}


def test_ids_are_prefixed_nested_and_optionally_not() -> None:
    with DAG("d", start_date=START) as dag, TaskGroup("extract"):
        EmptyOperator(task_id="load")
        with TaskGroup("clean"):
            EmptyOperator(task_id="dedupe")
        with TaskGroup("flat", prefix_group_id=False):
            EmptyOperator(task_id="raw")
            with TaskGroup("deep"):
                EmptyOperator(task_id="x")
    assert dag.task_ids == ["extract.load", "extract.clean.dedupe", "extract.raw", "extract.deep.x"]
    assert list(dag.task_groups) == ["extract", "extract.clean", "extract.flat", "extract.deep"]


def test_group_dependencies_link_its_leaves_and_roots_like_airflow() -> None:
    with DAG("d", start_date=START) as dag:
        start = EmptyOperator(task_id="start")
        with TaskGroup("etl") as etl:
            a = EmptyOperator(task_id="a")
            b = EmptyOperator(task_id="b")
            c = EmptyOperator(task_id="c")
            a >> [b, c]
        with TaskGroup("report") as report:
            EmptyOperator(task_id="r1")
            EmptyOperator(task_id="r2")
        end = EmptyOperator(task_id="end")
        start >> etl >> report >> end
    assert [t.task_id for t in etl.roots] == ["etl.a"]
    assert [t.task_id for t in etl.leaves] == ["etl.b", "etl.c"]
    assert upstream(dag) == {
        "start": [],
        "etl.a": ["start"],
        "etl.b": ["etl.a"],
        "etl.c": ["etl.a"],
        "report.r1": ["etl.b", "etl.c"],
        "report.r2": ["etl.b", "etl.c"],
        "end": ["report.r1", "report.r2"],
    }


def test_lists_chain_and_reversed_arrows_accept_groups() -> None:
    with DAG("d", start_date=START) as dag:
        x = EmptyOperator(task_id="x")
        y = EmptyOperator(task_id="y")
        with TaskGroup("g") as g:
            EmptyOperator(task_id="one")
        z = EmptyOperator(task_id="z")
        [x, y] >> g  # list.__rshift__ does not exist: TaskGroup.__rrshift__
        z << g
        w = EmptyOperator(task_id="w")
        chain(g, w)
    assert upstream(dag)["g.one"] == ["x", "y"]
    assert upstream(dag)["z"] == ["g.one"] and upstream(dag)["w"] == ["g.one"]


def test_default_args_of_a_group_win_over_the_dags_and_nest() -> None:
    with DAG("d", start_date=START, default_args={"retries": 1, "owner": "dag"}) as dag:
        with TaskGroup("g", default_args={"retries": 5}):
            EmptyOperator(task_id="a")
            EmptyOperator(task_id="own", retries=0)
            with TaskGroup("inner", default_args={"owner": "inner"}):
                EmptyOperator(task_id="b")
        EmptyOperator(task_id="outside")
    got = {tid: (t.retries, t.owner) for tid, t in dag.task_dict.items()}
    assert got == {"g.a": (5, "dag"), "g.own": (0, "dag"), "g.inner.b": (5, "inner"), "outside": (1, "dag")}


def test_task_group_decorator_names_calls_and_returns_the_last_result() -> None:
    @task
    def extract() -> int:
        return 1

    @task
    def load(value: int) -> int:
        return value

    @task_group
    def pipeline() -> object:
        """Extract then load."""
        return load(extract())

    @task_group(group_id="side")
    def side() -> None:
        extract()

    with DAG("d", start_date=START) as dag:
        first = pipeline()
        second = pipeline()
        group = side()
        first >> second
        extract() >> group
    assert dag.task_ids == ["pipeline.extract", "pipeline.load", "pipeline__1.extract", "pipeline__1.load",
                            "side.extract", "extract"]
    assert isinstance(group, TaskGroup) and dag.task_groups["pipeline"].tooltip == "Extract then load."
    assert upstream(dag)["pipeline__1.load"] == ["pipeline.load", "pipeline__1.extract"]
    assert upstream(dag)["side.extract"] == ["extract"]


def test_the_spec_records_group_paths_and_tooltips_through_json() -> None:
    with DAG("d", start_date=START) as dag:
        with TaskGroup("etl", tooltip="the ETL"), TaskGroup("extract"):
            EmptyOperator(task_id="load")
        EmptyOperator(task_id="alone")
    spec = DagSpec.from_json(dag.to_spec().to_json())
    assert spec.tasks["etl.extract.load"].groups == ("etl", "etl.extract")
    assert spec.tasks["alone"].groups == ()
    assert spec.task_groups == {"etl": {"tooltip": "the ETL", "parent": None},
                                "etl.extract": {"tooltip": "", "parent": "etl"}}
    assert spec == dag.to_spec()


def test_mistakes_are_definition_errors_with_hints() -> None:
    with pytest.raises(DagDefinitionError, match="TaskGroup 'g' is not in a DAG"):
        TaskGroup("g")
    with DAG("d", start_date=START):
        with pytest.raises(DagDefinitionError, match=r"group_id 'a\.b' is not valid"):
            TaskGroup("a.b")
        TaskGroup("g")
        with pytest.raises(DagDefinitionError, match="group_id 'g' is used twice"):
            TaskGroup("g")
        empty = TaskGroup("empty")
        after = EmptyOperator(task_id="after")
        with pytest.raises(DagDefinitionError, match="TaskGroup 'empty' has no tasks to link"):
            empty >> after
        with pytest.raises(DagDefinitionError, match="unknown argument 'tootip'"):
            TaskGroup("h", tootip="x")
        with TaskGroup("t"):
            EmptyOperator(task_id="x")
            with pytest.raises(DagDefinitionError, match=r"task_id 't\.x' is used twice"):
                EmptyOperator(task_id="x")


def test_dags_show_draws_groups_and_dags_test_runs_them(home: Home) -> None:
    home.write_dag("grouped.py", """
        import datetime as dt
        from headwater import DAG, BashOperator, TaskGroup

        with DAG("grouped", schedule=None, start_date=dt.datetime(2024, 1, 1)) as d:
            with TaskGroup("extract", tooltip="pull the listings") as ex:
                BashOperator(task_id="listings", bash_command="echo {{ task.task_id }}")
            BashOperator(task_id="fit", bash_command="echo fit")
            ex >> d.get_task("fit")
        """)
    shown = home.cli("dags", "show", "grouped", check=True).stdout
    assert "extract pull the listings" in shown
    assert "└── extract.listings" in shown
    home.cli("dags", "test", "grouped", "2024-01-02", check=True)
    (run,) = home.store.list_runs("grouped")
    states = {ti.task_id: (ti.state.value, ti.rendered) for ti in home.store.list_task_instances("grouped", run.run_id)}
    assert states == {"extract.listings": ("success", {"bash_command": "echo extract.listings"}),
                      "fit": ("success", {"bash_command": "echo fit"})}
