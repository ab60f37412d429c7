"""DAG and operator authoring: dependencies, ids, default_args, schedules, specs, messages."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.errors import CycleError, DagDefinitionError, TaskNotFoundError
from headwater.orchestration.baseoperator import BaseOperator, chain, cross_downstream
from headwater.orchestration.dag import DAG, collecting_dags, current_dag
from headwater.orchestration.operators import (
    BashOperator,
    BranchPythonOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from headwater.orchestration.spec import DagSpec
from headwater.orchestration.states import TriggerRule

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def make_dag(dag_id: str = "d", **kwargs: object) -> DAG:
    kwargs.setdefault("start_date", START)
    return DAG(dag_id, **kwargs)  # type: ignore[arg-type]


def edges(dag: DAG) -> set[tuple[str, str]]:
    return {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}


# -- dependencies ------------------------------------------------------------------


def test_shift_operators_link_tasks_and_lists_on_either_side() -> None:
    with make_dag() as dag:
        a, b, c, d, e = (EmptyOperator(task_id=x) for x in "abcde")
        a >> [b, c]
        [b, c] >> d
        e << d
    assert edges(dag) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")}
    assert [t.task_id for t in dag.roots] == ["a"]
    assert [t.task_id for t in dag.leaves] == ["e"]
    assert a.downstream_task_ids == {"b", "c"}
    assert d.upstream_task_ids == {"b", "c"}


def test_lshift_with_a_list_on_the_left() -> None:
    with make_dag() as dag:
        a, b, c = (EmptyOperator(task_id=x) for x in "abc")
        [a, b] << c
    assert edges(dag) == {("c", "a"), ("c", "b")}


def test_set_upstream_and_downstream() -> None:
    with make_dag() as dag:
        a, b, c = (EmptyOperator(task_id=x) for x in "abc")
        b.set_upstream(a)
        b.set_downstream([c])
    assert edges(dag) == {("a", "b"), ("b", "c")}


def test_chain_pairs_equal_lists_and_fans_out_around_single_tasks() -> None:
    with make_dag() as dag:
        t = {x: EmptyOperator(task_id=x) for x in ["start", "a1", "a2", "b1", "b2", "end"]}
        chain(t["start"], [t["a1"], t["a2"]], [t["b1"], t["b2"]], t["end"])
    assert edges(dag) == {
        ("start", "a1"),
        ("start", "a2"),
        ("a1", "b1"),
        ("a2", "b2"),
        ("b1", "end"),
        ("b2", "end"),
    }


def test_chain_rejects_lists_of_different_lengths() -> None:
    with make_dag():
        a, b, c = (EmptyOperator(task_id=x) for x in "abc")
        with pytest.raises(DagDefinitionError, match=r"different lengths .*\(1 and 2\)"):
            chain([a], [b, c])


def test_cross_downstream_links_every_pair() -> None:
    with make_dag() as dag:
        a, b, c, d = (EmptyOperator(task_id=x) for x in "abcd")
        cross_downstream([a, b], [c, d])
    assert edges(dag) == {("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")}


def test_cycle_is_rejected_when_the_closing_edge_is_added_and_named() -> None:
    with make_dag() as dag:
        a, b, c = (EmptyOperator(task_id=x) for x in "abc")
        a >> b >> c
        with pytest.raises(CycleError) as info:
            c >> a
    assert "a >> b >> c >> a" in str(info.value)
    assert edges(dag) == {("a", "b"), ("b", "c")}  # the refused edge was not recorded


def test_self_dependency_is_a_cycle() -> None:
    with make_dag():
        a = EmptyOperator(task_id="a")
        with pytest.raises(CycleError, match="a >> a"):
            a >> a


def test_task_without_dag_joins_the_dag_of_the_task_it_is_linked_to() -> None:
    dag = make_dag()
    a = EmptyOperator(task_id="a", dag=dag)
    loose = EmptyOperator(task_id="loose")
    loose2 = EmptyOperator(task_id="loose2")
    loose >> loose2  # neither has a DAG yet: allowed
    a >> loose
    assert loose.dag is dag and loose2.dag is dag
    assert set(dag.task_dict) == {"a", "loose", "loose2"}


def test_linking_tasks_of_two_dags_is_an_error() -> None:
    a = EmptyOperator(task_id="a", dag=make_dag("one"))
    b = EmptyOperator(task_id="b", dag=make_dag("two"))
    with pytest.raises(DagDefinitionError, match="of DAG 'one' with task 'b' of DAG 'two'"):
        a >> b


def test_task_without_dag_reports_it() -> None:
    with pytest.raises(DagDefinitionError, match="not in a DAG"):
        _ = EmptyOperator(task_id="alone").dag


def test_topological_sort_is_stable_by_definition_order() -> None:
    with make_dag() as dag:
        x, a, b, c = (EmptyOperator(task_id=n) for n in ["x", "a", "b", "c"])
        c << a
        b << x
    assert [t.task_id for t in dag.topological_sort()] == ["x", "a", "b", "c"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=30))
def test_random_edges_never_leave_a_cycle(pairs: list[tuple[int, int]]) -> None:
    """Whatever edges are attempted, the accepted ones form a DAG that sorts completely."""
    with make_dag() as dag:
        ops = [EmptyOperator(task_id=f"t{i}") for i in range(8)]
        for up, down in pairs:
            with contextlib.suppress(CycleError):
                ops[up] >> ops[down]
    order = [t.task_id for t in dag.topological_sort()]
    assert len(order) == 8
    position = {tid: i for i, tid in enumerate(order)}
    assert all(position[up] < position[down] for up, down in edges(dag))


# -- ids ---------------------------------------------------------------------------


def test_duplicate_task_id_names_it() -> None:
    with make_dag("pipeline"):
        EmptyOperator(task_id="load")
        with pytest.raises(DagDefinitionError, match="task_id 'load' is used twice in DAG 'pipeline'"):
            EmptyOperator(task_id="load")


@pytest.mark.parametrize("bad", ["has space", "slash/x", "", "émoji"])
def test_invalid_ids_are_rejected_with_the_allowed_characters(bad: str) -> None:
    with pytest.raises(DagDefinitionError) as info:
        DAG(bad, schedule=None)
    assert "dag_id" in str(info.value)
    with make_dag(), pytest.raises(DagDefinitionError, match="task_id"):
        EmptyOperator(task_id=bad)


def test_valid_ids_allow_dots_dashes_underscores() -> None:
    with make_dag("a.b-c_d") as dag:
        EmptyOperator(task_id="x.y-z_1")
    assert dag.has_task("x.y-z_1")


def test_get_task_suggests_a_close_id() -> None:
    with make_dag() as dag:
        EmptyOperator(task_id="transform")
    with pytest.raises(TaskNotFoundError, match="Did you mean 'transform'"):
        dag.get_task("transfrom")


# -- arguments ---------------------------------------------------------------------


def test_default_args_apply_unless_the_task_sets_the_argument() -> None:
    default_args = {
        "owner": "data-team",
        "retries": 3,
        "retry_delay": dt.timedelta(seconds=30),
        "pool": "etl",
        "trigger_rule": "all_done",
        "email_on_failure": True,  # an Airflow-only key is accepted and ignored
        "bash_command": "echo from defaults",  # applies to operators that take it
    }
    with make_dag(default_args=default_args):
        a = EmptyOperator(task_id="a")
        b = EmptyOperator(task_id="b", retries=0, owner="me")
        c = BashOperator(task_id="c")
    assert (a.owner, a.retries, a.retry_delay, a.pool, a.trigger_rule) == (
        "data-team",
        3,
        dt.timedelta(seconds=30),
        "etl",
        TriggerRule.ALL_DONE,
    )
    assert (b.owner, b.retries) == ("me", 0)
    assert c.bash_command == "echo from defaults"


def test_dag_start_date_falls_back_to_default_args() -> None:
    dag = DAG("d", default_args={"start_date": dt.datetime(2023, 5, 1)})
    assert dag.start_date == dt.datetime(2023, 5, 1, tzinfo=dt.UTC)


def test_task_level_default_args_override_the_dags() -> None:
    with make_dag(default_args={"retries": 1}):
        t = EmptyOperator(task_id="t", default_args={"retries": 4})
    assert t.retries == 4


def test_unknown_operator_argument_suggests_the_right_one() -> None:
    with make_dag(), pytest.raises(DagDefinitionError) as info:
        BashOperator(task_id="t", bash_command="echo", retry=2)
    assert "unknown argument 'retry'" in str(info.value)
    assert "Did you mean 'retries'?" in str(info.value)


def test_misspelt_required_argument_is_reported_with_a_suggestion() -> None:
    with make_dag(), pytest.raises(DagDefinitionError) as info:
        BashOperator(task_id="t", bash_comand="echo")
    assert "missing required argument 'bash_command'" in str(info.value)
    assert "Did you mean 'bash_command'?" in str(info.value)


def test_invalid_trigger_rule_lists_the_valid_rules() -> None:
    with make_dag(), pytest.raises(DagDefinitionError) as info:
        EmptyOperator(task_id="t", trigger_rule="all_sucess")
    message = str(info.value)
    assert "invalid trigger_rule 'all_sucess'" in message
    assert "Did you mean 'all_success'?" in message
    assert all(rule.value in message for rule in TriggerRule)


def test_unknown_dag_argument_suggests_the_right_one() -> None:
    with pytest.raises(DagDefinitionError, match="Did you mean 'max_active_runs'"):
        DAG("d", schedule=None, max_active_run=2)


def test_negative_retries_are_rejected() -> None:
    with make_dag(), pytest.raises(DagDefinitionError, match="retries of task 't'"):
        EmptyOperator(task_id="t", retries=-1)


def test_outputs_must_be_targets() -> None:
    with make_dag(), pytest.raises(DagDefinitionError, match="must be targets"):
        EmptyOperator(task_id="t", outputs="data.csv")


def test_scheduled_dag_needs_a_start_date() -> None:
    with DAG("d", schedule="@daily"), pytest.raises(DagDefinitionError, match="has a start_date"):
        EmptyOperator(task_id="t")
    with DAG("manual", schedule=None) as manual:
        EmptyOperator(task_id="t")
    assert manual.start_date is None


# -- schedules ---------------------------------------------------------------------


def test_schedule_and_schedule_interval_are_both_accepted() -> None:
    assert make_dag(schedule="@daily").schedule == "0 0 * * *"
    assert make_dag(schedule_interval="@hourly").schedule == "0 * * * *"
    assert make_dag(schedule=dt.timedelta(hours=6)).schedule == "every:21600"
    assert make_dag(schedule=None).schedule is None


def test_unset_schedule_is_daily_as_in_airflow_2() -> None:
    assert make_dag().schedule == "every:86400"


def test_both_schedule_arguments_is_an_error() -> None:
    with pytest.raises(DagDefinitionError, match="both schedule and schedule_interval"):
        make_dag(schedule="@daily", schedule_interval="@daily")


def test_bad_schedule_is_an_error() -> None:
    with pytest.raises(DagDefinitionError):
        make_dag(schedule="@sometimes")


# -- context and registry ----------------------------------------------------------


def test_with_blocks_nest_and_restore() -> None:
    outer, inner = make_dag("outer"), make_dag("inner")
    assert current_dag() is None
    with outer:
        with inner:
            assert current_dag() is inner
            t = EmptyOperator(task_id="t")
        assert current_dag() is outer
    assert current_dag() is None
    assert t.dag is inner


def test_registry_collects_only_inside_the_loader_block() -> None:
    make_dag("before")
    with collecting_dags() as found:
        make_dag("inside")
    make_dag("after")
    assert [d.dag_id for d in found] == ["inside"]


# -- specs -------------------------------------------------------------------------


def test_to_spec_carries_scheduling_facts_and_round_trips() -> None:
    default_args = {"retries": 2, "retry_delay": dt.timedelta(minutes=1), "owner": "ml"}
    with make_dag(
        "facts",
        description="desc",
        schedule="0 6 * * *",
        end_date=dt.datetime(2025, 1, 1),
        catchup=True,
        default_args=default_args,
        params={"limit": 10},
        tags=["ml", "daily"],
        max_active_runs=2,
        max_active_tasks=4,
        is_paused_upon_creation=True,
    ) as dag:
        a = EmptyOperator(task_id="a")
        b = PythonOperator(
            task_id="b",
            python_callable=print,
            execution_timeout=dt.timedelta(seconds=90),
            retry_exponential_backoff=True,
            max_retry_delay=600,
            pool="gpu",
            pool_slots=2,
            depends_on_past=True,
            trigger_rule=TriggerRule.ONE_SUCCESS,
            doc_md="does b",
        )
        a >> b
    spec = dag.to_spec(fileloc="/dags/facts.py", source_hash="abc")
    assert spec == DagSpec.from_json(spec.to_json())
    assert (spec.schedule, spec.catchup, spec.tags, spec.owner, spec.params) == (
        "0 6 * * *",
        True,
        ("ml", "daily"),
        "ml",
        {"limit": 10},
    )
    assert (spec.fileloc, spec.source_hash, spec.max_active_runs, spec.max_active_tasks) == (
        "/dags/facts.py",
        "abc",
        2,
        4,
    )
    tb = spec.tasks["b"]
    assert tb.upstream == ("a",)
    assert (tb.retries, tb.retry_delay, tb.execution_timeout, tb.max_retry_delay) == (2, 60.0, 90.0, 600.0)
    assert (tb.pool, tb.pool_slots, tb.depends_on_past, tb.trigger_rule) == ("gpu", 2, True, TriggerRule.ONE_SUCCESS)
    assert (tb.operator, tb.doc, tb.retry_exponential_backoff) == ("PythonOperator", "does b", True)
    assert spec.tasks["a"].is_empty and not tb.is_empty
    assert spec.topological_order() == ["a", "b"]


def test_non_json_params_are_reported_at_spec_time() -> None:
    dag = make_dag(params={"when": dt.date(2024, 1, 1)})
    with pytest.raises(DagDefinitionError, match="must be JSON values"):
        dag.to_spec()


def test_outputs_mark_the_spec() -> None:
    class Marker:
        def exists(self) -> bool:
            return False

    with make_dag() as dag:
        EmptyOperator(task_id="t", outputs=Marker())
    assert dag.to_spec().tasks["t"].has_outputs
    assert not dag.to_spec().tasks["t"].is_empty  # has outputs to check: a worker must look


def test_custom_operator_without_init_gets_default_args() -> None:
    class Custom(BaseOperator):
        def execute(self, context: dict[str, object]) -> str:
            return "ok"

    with make_dag(default_args={"retries": 5}) as dag:
        Custom(task_id="c")
    assert dag.to_spec().tasks["c"].retries == 5
    assert dag.to_spec().tasks["c"].operator == "Custom"


def test_branch_and_short_circuit_are_python_operators() -> None:
    with make_dag():
        b = BranchPythonOperator(task_id="b", python_callable=lambda: "x")
        s = ShortCircuitOperator(task_id="s", python_callable=lambda: True, ignore_downstream_trigger_rules=False)
    assert b.template_fields == PythonOperator.template_fields
    assert s.ignore_downstream_trigger_rules is False


def test_airflow_ui_arguments_are_accepted_and_unsupported_ones_explained() -> None:
    dag = make_dag(default_view="graph", orientation="LR")
    assert dag.airflow_args == {"default_view": "graph", "orientation": "LR"}
    with pytest.raises(DagDefinitionError) as info:
        make_dag(concurrency=4)
    assert "'concurrency' is not supported" in str(info.value)
    assert info.value.hint and "max_active_tasks" in info.value.hint
