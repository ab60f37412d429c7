"""Templates and the task context: dates, params precedence, macros, errors that name the culprit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from headwater.errors import TemplateError
from headwater.executor.base import RunInfo, TaskKey, Workload
from headwater.orchestration.context import RuntimeTaskInstance, build_context
from headwater.orchestration.dag import DAG
from headwater.orchestration.operators import BashOperator, PythonOperator
from headwater.orchestration.templating import TemplateRenderer, render_template_fields

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
RUN = RunInfo(
    run_id="manual__2024-02-29T06:00:00",
    logical_date="2024-02-29T06:00:00+00:00",
    data_interval_start="2024-02-28T06:00:00+00:00",
    data_interval_end="2024-02-29T06:00:00+00:00",
    run_type="manual",
    conf={"from_conf": "conf", "both": "conf"},
)


def context_for(task: Any, dag: DAG, **workload: Any) -> dict[str, Any]:
    w = Workload(
        key=TaskKey(dag.dag_id, RUN.run_id, task.task_id, 2),
        fileloc="",
        run=RUN,
        log_path="",
        artifact_dir="",
        max_tries=3,
        **workload,
    )
    return build_context(task, dag, w, RuntimeTaskInstance(task, w))


def render(text: str, **params: Any) -> str:
    with DAG("d", start_date=START, params=params) as dag:
        op = BashOperator(task_id="t", bash_command=text)
    ctx = context_for(op, dag)
    render_template_fields(op, ctx)
    return str(op.bash_command)


def test_date_variables() -> None:
    assert render("{{ ds }} {{ ds_nodash }} {{ ts }} {{ ts_nodash }}") == (
        "2024-02-29 20240229 2024-02-29T06:00:00+00:00 20240229T060000"
    )
    interval = render("{{ data_interval_start }}|{{ data_interval_end | ds }}")
    assert interval == "2024-02-28 06:00:00+00:00|2024-02-29"
    assert render("{{ logical_date == execution_date }} {{ run_id }} {{ dag_run.run_type }}") == (
        "True manual__2024-02-29T06:00:00 manual"
    )


def test_macros() -> None:
    shifted = render("{{ macros.ds_add(ds, 1) }} {{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m') }}")
    assert shifted == "2024-03-01 29/02"
    assert render("{{ (logical_date - macros.timedelta(days=1)).strftime('%A') }}") == "Wednesday"


def test_params_dag_then_task_then_workload_then_conf() -> None:
    with DAG("d", start_date=START, params={"a": "dag", "b": "dag", "both": "dag", "w": "dag"}) as dag:
        op = PythonOperator(task_id="t", python_callable=print, params={"b": "task", "both": "task"})
    ctx = context_for(op, dag, params={"w": "workload"})
    assert ctx["params"] == {"a": "dag", "b": "task", "both": "conf", "w": "workload", "from_conf": "conf"}


def test_ti_and_try_number() -> None:
    with DAG("d", start_date=START) as dag:
        op = PythonOperator(task_id="t", python_callable=print)
    ctx = context_for(op, dag)
    assert ctx["try_number"] == 2
    assert (ctx["ti"].dag_id, ctx["ti"].task_id, ctx["ti"].max_tries) == ("d", "t", 3)
    assert ctx["task"] is op and ctx["dag"] is dag


def test_nested_structures_are_rendered_and_plain_values_kept() -> None:
    with DAG("d", start_date=START, params={"x": "X"}) as dag:
        op = PythonOperator(
            task_id="t",
            python_callable=print,
            op_args=["{{ params.x }}", 5, ("{{ ds }}", None)],
            op_kwargs={"k": {"deep": ["{{ params.x }}-{{ ds_nodash }}"]}, "n": 1.5},
            templates_dict={"query": "select * from t where day = '{{ ds }}'"},
        )
    shown = render_template_fields(op, context_for(op, dag))
    assert op.op_args == ["X", 5, ("2024-02-29", None)]
    assert op.op_kwargs == {"k": {"deep": ["X-20240229"]}, "n": 1.5}
    assert op.templates_dict == {"query": "select * from t where day = '2024-02-29'"}
    assert shown["op_args"] == "['X', 5, ('2024-02-29', None)]"


def test_undefined_variable_names_task_field_and_variable() -> None:
    with pytest.raises(TemplateError) as info:
        render("echo {{ not_a_var }}")
    assert str(info.value).startswith("cannot render field 'bash_command' of task 't': variable 'not_a_var'")


def test_template_syntax_error_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="syntax error"):
        render("echo {{ ds ")


def test_strings_without_template_syntax_do_not_load_jinja() -> None:
    with DAG("d", start_date=START) as dag:
        op = BashOperator(task_id="t", bash_command="echo plain")
    renderer = TemplateRenderer(op, context_for(op, dag))
    assert renderer.render("echo plain", "bash_command") == "echo plain"
    assert renderer._env is None


def test_missing_template_file_says_where_it_looked() -> None:
    with pytest.raises(TemplateError, match=r"template file 'missing\.sh' not found"):
        render("missing.sh")
