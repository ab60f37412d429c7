"""DAG params with schemas: validation keywords, parse-time defaults, validate_conf, secrets, the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from headwater.errors import DagDefinitionError, UserError
from headwater.orchestration.dag import DAG
from headwater.orchestration.operators import PythonOperator
from headwater.orchestration.params import MASK, Param, ParamValidationError, validate_conf
from headwater.orchestration.spec import DagSpec
from tests.orchestration.conftest import Home
from tests.orchestration.test_runtime import RUN, Runner
from tests.orchestration.test_runtime_templating import START, context_for

# -- the keywords: (schema, a value it accepts, a value it refuses, words of the refusal)
CASES: list[tuple[dict[str, Any], Any, Any, str]] = [
    ({"type": "integer"}, 3, 3.5, "is a number, not integer"),
    ({"type": "integer"}, 2.0, True, "is a boolean, not integer"),
    ({"type": "number"}, 1, "1", "is a string, not number"),
    ({"type": "string"}, "x", 1, "is an integer, not string"),
    ({"type": "boolean"}, False, 0, "not boolean"),
    ({"type": "array"}, [1], {"a": 1}, "is an object, not array"),
    ({"type": "object"}, {"a": 1}, [1], "is an array, not object"),
    ({"type": ["null", "string"]}, None, 5, "not null or string"),
    ({"enum": ["all", "eu", "us"]}, "eu", "asia", 'is not one of "all", "eu", "us"'),
    ({"enum": [1, 2]}, 1, True, "is not one of 1, 2"),
    ({"const": "x"}, "x", "y", 'is not "x"'),
    ({"minimum": 1}, 1, 0, "less than the minimum 1"),
    ({"maximum": 10}, 10, 10.5, "more than the maximum 10"),
    ({"exclusiveMinimum": 0}, 0.1, 0, "not more than exclusiveMinimum 0"),
    ({"exclusiveMaximum": 1}, 0.9, 1, "not less than exclusiveMaximum 1"),
    ({"multipleOf": 0.5}, 1.5, 1.2, "not a multiple of 0.5"),
    ({"minLength": 2}, "ab", "a", "shorter than minLength 2"),
    ({"maxLength": 2}, "ab", "abc", "longer than maxLength 2"),
    ({"pattern": "^[a-z]+$"}, "abc", "ab1", "does not match pattern"),
    ({"format": "date"}, "2024-02-29", "2024-02-30", "is not a date"),
    ({"format": "date-time"}, "2024-02-29T06:00:00+00:00", "2024-02-29", "is not a date-time"),
    ({"format": "time"}, "06:30:00", "25:00", "is not a time"),
    ({"minItems": 1}, [1], [], "fewer than minItems 1"),
    ({"maxItems": 1}, [1], [1, 2], "more than maxItems 1"),
    ({"items": {"type": "integer", "minimum": 0}}, [0, 1], [0, -1], "item 1: -1 is less than the minimum 0"),
]


@pytest.mark.parametrize(("schema", "good", "bad", "words"), CASES)
def test_each_keyword_accepts_and_refuses(schema: dict[str, Any], good: Any, bad: Any, words: str) -> None:
    param = Param(good, **schema)
    assert param.resolve(name="p") == good
    with pytest.raises(ParamValidationError) as info:
        param.resolve(bad, name="param 'p'")
    assert info.value.message.startswith("param 'p': ")
    assert words in info.value.message


def test_a_typo_in_a_schema_keyword_is_refused_with_a_suggestion() -> None:
    with pytest.raises(DagDefinitionError, match=r"unknown schema keyword 'minimun'\. Did you mean 'minimum'"):
        Param(1, minimun=0)
    with pytest.raises(DagDefinitionError, match="unknown type 'int'"):
        Param(1, type="int")
    with pytest.raises(DagDefinitionError, match="unknown format 'email'"):
        Param("a@b", format="email")
    with pytest.raises(DagDefinitionError, match="not a regular expression"):
        Param("a", pattern="(")


def test_a_bad_default_fails_the_dag_naming_the_param_and_the_rule() -> None:
    with pytest.raises(DagDefinitionError) as info:
        DAG("d", schedule=None, params={"retrain_every": Param(0, type="integer", minimum=1)})
    assert info.value.message == "default of param 'retrain_every' of DAG 'd': 0 is less than the minimum 1"
    assert info.value.hint == "fix the default of 'retrain_every' or its schema"


def test_plain_values_are_params_of_their_json_type_and_none_is_untyped() -> None:
    dag = DAG("d", schedule=None, params={"rows": 10, "rate": 0.5, "name": "x", "flag": True, "anything": None})
    assert dag.params == {"rows": 10, "rate": 0.5, "name": "x", "flag": True, "anything": None}
    schema = {name: entry["schema"] for name, entry in dag.to_spec().params_schema.items()}
    assert schema == {"rows": {"type": "integer"}, "rate": {"type": "number"}, "name": {"type": "string"},
                      "flag": {"type": "boolean"}, "anything": {}}


def _spec(**params: Any) -> DagSpec:
    """The spec as the CLI and the UI get it: through JSON, without the DAG object."""
    return DagSpec.from_json(DAG("houses", schedule=None, params=params).to_spec().to_json())


def test_validate_conf_merges_over_defaults_from_the_stored_spec() -> None:
    spec = _spec(retrain_every=Param(2, type="integer", minimum=1, description="days between retrains"),
                 region=Param("all", enum=["all", "eu", "us"]), rows=10)
    assert spec.params_schema["retrain_every"] == {
        "schema": {"type": "integer", "minimum": 1}, "description": "days between retrains",
        "secret": False, "required": False,
    }
    assert validate_conf(spec, {}) == {"retrain_every": 2, "region": "all", "rows": 10}
    assert validate_conf(spec, {"region": "eu", "rows": 3}) == {"retrain_every": 2, "region": "eu", "rows": 3}
    with pytest.raises(ParamValidationError) as info:
        validate_conf(spec, {"retrain_every": 0})
    assert info.value.message == "param 'retrain_every': 0 is less than the minimum 1"
    assert info.value.hint == "give a value that meets the rule (days between retrains)"
    with pytest.raises(ParamValidationError, match='"asia" is not one of "all", "eu", "us"'):
        validate_conf(spec, {"region": "asia"})


def test_validate_conf_refuses_unknown_names_missing_required_ones_and_non_objects() -> None:
    spec = _spec(region="all", cutoff=Param(type="string", format="date"))
    assert spec.params_schema["cutoff"]["required"] is True
    with pytest.raises(ParamValidationError, match=r"no param 'regoin'\. Did you mean 'region'"):
        validate_conf(spec, {"regoin": "eu", "cutoff": "2024-01-01"})
    with pytest.raises(ParamValidationError, match="param 'cutoff' of DAG 'houses' has no default"):
        validate_conf(spec, {"region": "eu"})
    assert validate_conf(spec, {"cutoff": "2024-01-01"}) == {"region": "all", "cutoff": "2024-01-01"}
    with pytest.raises(ParamValidationError, match="conf must be a JSON object, not list"):
        validate_conf(spec, [1])  # type: ignore[arg-type]
    # Without params, conf is free-form (Airflow's dag_run.conf).
    assert validate_conf(_spec(), {"anything": [1, 2]}) == {"anything": [1, 2]}


def test_a_spec_stored_before_params_had_schemas_is_checked_by_its_defaults_types() -> None:
    old = dataclasses.replace(_spec(rows=10), params_schema={})
    assert validate_conf(old, {"rows": 5}) == {"rows": 5}
    with pytest.raises(ParamValidationError, match="param 'rows': \"5\" is a string, not integer"):
        validate_conf(old, {"rows": "5"})


def test_secrets_never_reach_the_spec_and_an_unchanged_mask_keeps_the_default() -> None:
    spec = _spec(api_key=Param("s3cr3t-value", type="string", secret=True), empty=Param("", secret=True))
    assert "s3cr3t-value" not in spec.to_json()
    assert spec.params == {"api_key": MASK, "empty": ""}
    assert spec.params_schema["api_key"]["secret"] is True
    # Not given (or given as the mask a form showed): left out, so the DAG file's value stands.
    assert validate_conf(spec, {}) == {}
    assert validate_conf(spec, {"api_key": MASK}) == {}
    assert validate_conf(spec, {"api_key": "other"}) == {"api_key": "other"}
    with pytest.raises(ParamValidationError, match="is an integer, not string"):
        validate_conf(spec, {"api_key": 5})
    assert "s3cr3t-value" not in repr(Param("s3cr3t-value", secret=True))


def test_params_reach_the_context_secret_from_the_dag_file_task_params_unwrapped() -> None:
    with DAG("d", start_date=START, params={"region": Param("all", enum=["all", "eu"]),
                                            "api_key": Param("s3cr3t-value", secret=True)}) as dag:
        op = PythonOperator(task_id="t", python_callable=print, params={"n": Param(3, type="integer")})
    spec = dag.to_spec()
    # The scheduler sends the spec's params along; the masked secret must not win.
    ctx = context_for(op, dag, params=dict(spec.params))
    assert ctx["params"]["api_key"] == "s3cr3t-value"
    assert ctx["params"]["n"] == 3 and ctx["params"]["region"] == "all"


def test_rendered_fields_and_logs_mask_secret_values_and_taskflow_gets_params(runner: Runner) -> None:
    path = runner.dag_file(
        """
        from headwater import Param

        @task
        def read(params=None):
            print("calling with", params["api_key"])
            return {"region": params["region"], "key_len": len(params["api_key"])}

        with DAG("d", start_date=START, params={
            "region": Param("all", enum=["all", "eu"]),
            "api_key": Param("s3cr3t-value", type="string", secret=True),
        }) as d:
            BashOperator(task_id="call", bash_command="test -n '{{ params.api_key }}' && echo {{ params.region }}")
            read()
        """
    )
    event = runner.run(path, "call", run=dataclasses.replace(RUN, conf={"region": "eu"}), params={"api_key": MASK})
    assert event.state == "success", event.reason
    assert event.rendered["bash_command"] == f"test -n '{MASK}' && echo eu"
    # What the scheduler records (rendered fields, the XCom of the echo) holds no secret.
    assert "s3cr3t-value" not in event.to_json()
    assert event.xcom["return_value"]["json"] == "eu"
    read = runner.run(path, "read")
    assert read.state == "success", read.reason
    assert read.xcom["return_value"]["json"] == {"region": "all", "key_len": len("s3cr3t-value")}
    # The try's log file: what the task printed, with the secret masked where it is written.
    log = runner.log("read")
    assert f"calling with {MASK}" in log
    assert "s3cr3t-value" not in log + runner.log("call")


def test_dags_trigger_test_and_backfill_check_conf_before_creating_runs(home: Home) -> None:
    home.write_dag("houses.py", """
        import datetime as dt
        from headwater import DAG, Param, BashOperator

        with DAG("houses", schedule="@daily", start_date=dt.datetime(2024, 1, 1), params={
            "retrain_every": Param(2, type="integer", minimum=1, description="days between retrains"),
            "region": Param("all", enum=["all", "eu", "us"]),
            "api_key": Param("s3cr3t-value", type="string", secret=True),
        }):
            BashOperator(task_id="fit", bash_command="echo {{ params.region }} {{ params.retrain_every }}")
        """)
    bad = home.cli("dags", "trigger", "houses", "--conf", '{"retrain_every": 0}')
    assert bad.returncode == 1
    assert "param 'retrain_every': 0 is less than the minimum 1" in bad.stdout + bad.stderr
    for args in (("dags", "test", "houses", "2024-01-02"), ("dags", "backfill", "houses", "-s", "2024-01-02",
                                                            "-e", "2024-01-03", "-p", "1")):
        refused = home.cli(*args, "--conf", '{"region": "asia"}')
        assert refused.returncode == 1, refused.stdout
        assert "param 'region': \"asia\" is not one of \"all\", \"eu\", \"us\"" in refused.stdout + refused.stderr
    assert home.store.list_runs("houses") == []

    ok = home.cli("dags", "test", "houses", "2024-01-02", "--conf", '{"region": "eu"}', check=True)
    assert "run success" in ok.stdout
    (run,) = home.store.list_runs("houses")
    assert run.conf == {"region": "eu"}
    (ti,) = home.store.list_task_instances("houses", run.run_id)
    assert ti.rendered == {"bash_command": "echo eu 2"}

    shown = home.cli("dags", "show", "houses", check=True).stdout
    assert "s3cr3t-value" not in shown
    assert "retrain_every" in shown and "days between retrains" in shown and MASK in shown
    rec = home.store.get_dag("houses")
    assert rec is not None and "s3cr3t-value" not in rec.spec.to_json()


def test_a_bad_default_is_an_import_error_with_file_and_line(home: Home) -> None:
    home.write_dag("broken.py", """
        from headwater import DAG, Param

        with DAG("broken", schedule=None, params={
            "region": Param("asia", enum=["all", "eu"]),
        }):
            pass
        """)
    out = home.cli("dags", "list", check=True).stdout
    flat = " ".join(out.split())
    assert "broken.py:4" in flat
    assert "default of param 'region' of DAG 'broken': \"asia\" is not one of \"all\", \"eu\"" in flat


def test_user_errors_are_user_errors() -> None:
    # The CLI prints UserErrors as one line with a hint and exits 1; conf problems must be ones.
    assert issubclass(ParamValidationError, UserError)
    assert json.loads(json.dumps(Param(1, type="integer").dump()))["schema"] == {"type": "integer"}


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)

