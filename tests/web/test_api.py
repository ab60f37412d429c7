"""The REST API under /api/v1, through Starlette's TestClient, over a real populated home.

Runs are made by the real scheduler; clear and mark are checked by running the scheduler again.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import SECRET_PASSWORD, WebHome

ETL_1, ETL_2 = WebHome.etl_runs
FLAKY = WebHome.flaky_run


def _run_url(dag_id: str, run_id: str) -> str:
    return f"/api/v1/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def _error(response: object, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert set(error) >= {"code", "message", "hint"}
    return error


def test_health_answers_and_reads_the_database(api: TestClient, web_home: WebHome) -> None:
    assert api.get("/api/v1/health").json() == {"status": "ok", "database": "ok"}
    # The home the fixture built is what the app serves.
    assert {d.dag_id for d in web_home.store.list_dags()} == {"etl", "flaky", "xss_dag"}


# -- DAGs -------------------------------------------------------------------------------


def test_dag_list_shows_schedule_owner_tags_last_runs_next_run_and_import_errors(api: TestClient) -> None:
    body = api.get("/api/v1/dags").json()
    dags = {d["dag_id"]: d for d in body["dags"]}
    assert list(dags) == ["etl", "flaky", "xss_dag"]
    etl = dags["etl"]
    assert (etl["schedule"], etl["owner"], etl["tags"], etl["tasks"], etl["is_paused"]) == (
        "0 0 * * *", "data-team", ["etl", "daily"], 3, False)
    assert [(r["run_id"], r["state"]) for r in etl["last_runs"]] == [(ETL_2, "success"), (ETL_1, "success")]
    # The next scheduled run comes after the last scheduled one; unscheduled DAGs have none.
    assert etl["next_run"] is not None and etl["next_run"] > "2024-01-02"
    assert dt.datetime.fromisoformat(etl["next_run_after"]) - dt.datetime.fromisoformat(etl["next_run"]) == \
        dt.timedelta(days=1)
    assert dags["flaky"]["next_run"] is None and dags["flaky"]["last_runs"][0]["state"] == "failed"
    [error] = body["import_errors"]
    assert (error["file"], error["lineno"], error["kind"]) == ("broken.py", 3, "syntax")
    assert api.get("/api/v1/import-errors").json() == body["import_errors"]


def test_dag_list_filters_by_tag_paused_and_search(api: TestClient) -> None:
    def ids(query: str) -> list[str]:
        return [d["dag_id"] for d in api.get(f"/api/v1/dags?{query}").json()["dags"]]

    assert ids("tag=daily") == ["etl"]
    assert ids("search=FLA") == ["flaky"]
    assert ids("paused=true") == []
    api.post("/api/v1/dags/flaky/pause")
    assert ids("paused=true") == ["flaky"]
    assert ids("last_runs=0") == ["etl", "flaky", "xss_dag"]


def test_one_dag_lists_its_tasks_in_dependency_order_with_their_wiring(api: TestClient) -> None:
    body = api.get("/api/v1/dags/flaky").json()
    tasks = [(t["task_id"], t["operator"], t["upstream"], t["downstream"], t["retries"]) for t in body["task_list"]]
    assert tasks == [("ok", "BashOperator", [], ["boom"], 0), ("boom", "BashOperator", ["ok"], ["after"], 1),
                     ("after", "BashOperator", ["boom"], [], 0)]
    assert body["start_date"].startswith("2024-01-01")


def test_unknown_dag_is_a_404_with_a_did_you_mean(api: TestClient) -> None:
    error = _error(api.get("/api/v1/dags/flakey"), 404)
    assert error["code"] == "not_found" and error["message"] == "no DAG 'flakey'"
    assert error["hint"] == "did you mean 'flaky'?"


def test_dag_source_is_the_file_with_secrets_masked(api: TestClient) -> None:
    body = api.get("/api/v1/dags/etl/source").json()
    assert body["file"] == "etl.py"
    assert 'PythonOperator(task_id="extract"' in body["source"]
    assert SECRET_PASSWORD not in body["source"]
    assert "postgresql://loader:***@127.0.0.1:5432/sales" in body["source"]


def test_pause_and_unpause_change_the_dag_and_its_next_run(api: TestClient, web_home: WebHome) -> None:
    paused = api.post("/api/v1/dags/etl/pause").json()
    assert paused["is_paused"] is True and paused["next_run"] is None
    assert web_home.store.get_dag("etl").is_paused  # type: ignore[union-attr]
    unpaused = api.post("/api/v1/dags/etl/unpause").json()
    assert unpaused["is_paused"] is False and unpaused["next_run"] is not None
    assert not web_home.store.get_dag("etl").is_paused  # type: ignore[union-attr]


# -- trigger ------------------------------------------------------------------------------


def test_trigger_queues_a_manual_run_with_checked_params(api: TestClient, web_home: WebHome) -> None:
    response = api.post("/api/v1/dags/etl/runs",
                        json={"conf": {"rows": 5}, "logical_date": "2024-02-01T00:00:00", "run_id": "by_hand_1"})
    assert response.status_code == 201, response.text
    run = response.json()
    assert (run["run_id"], run["state"], run["run_type"], run["conf"]) == ("by_hand_1", "queued", "manual", {"rows": 5})
    assert run["logical_date"] == "2024-02-01T00:00:00Z"
    stored = web_home.store.get_run("etl", "by_hand_1")
    assert stored is not None and stored.conf == {"rows": 5}
    assert len(web_home.store.list_task_instances("etl", "by_hand_1")) == 3
    # The scheduler runs it to success: the run is real.
    from headwater.executor.inline import InlineExecutor
    from headwater.orchestration.scheduler import Scheduler, SchedulerOptions

    Scheduler(web_home.store, InlineExecutor(), web_home.settings,
              SchedulerOptions(only_runs={("etl", "by_hand_1")}, take_lease=False)).run()
    assert api.get(_run_url("etl", "by_hand_1")).json()["state"] == "success"


@pytest.mark.parametrize(("conf", "message", "hint"), [
    ({"row": 5}, "DAG 'etl' has no param 'row'. Did you mean 'rows'?", "its params: api_password, db_url, rows"),
    ({"rows": "five"}, 'param \'rows\': "five" is a string, not integer', "give a value that meets the rule"),
    ({"api_password": 3}, "param 'api_password': 3 is an integer, not string", "give a value that meets the rule"),
])
def test_trigger_refuses_params_the_dag_does_not_take(api: TestClient, web_home: WebHome, conf: dict[str, object],
                                                      message: str, hint: str) -> None:
    error = _error(api.post("/api/v1/dags/etl/runs", json={"conf": conf}), 400)
    assert (error["message"], error["hint"]) == (message, hint)
    assert SECRET_PASSWORD not in str(error)
    assert len(web_home.store.list_runs("etl")) == 2  # nothing created


def test_trigger_refuses_a_taken_date_or_run_id_and_a_bad_run_id(api: TestClient, web_home: WebHome) -> None:
    taken = _error(api.post("/api/v1/dags/etl/runs", json={"logical_date": "2024-01-01T00:00:00Z"}), 400)
    assert taken["message"] == "DAG 'etl' already has a run at 2024-01-01T00:00:00+00:00"
    same_id = _error(api.post("/api/v1/dags/etl/runs", json={"run_id": ETL_1}), 400)
    assert same_id["message"] == f"DAG 'etl' already has a run {ETL_1!r}"
    bad_id = _error(api.post("/api/v1/dags/etl/runs", json={"run_id": "../x"}), 422)
    assert bad_id["code"] == "invalid" and "run_id" in bad_id["message"]
    assert _error(api.post("/api/v1/dags/nope/runs", json={}), 404)["message"] == "no DAG 'nope'"
    assert len(web_home.store.list_runs("etl")) == 2


# -- runs ---------------------------------------------------------------------------------


def test_runs_of_every_dag_newest_first_with_filters(api: TestClient) -> None:
    page = api.get("/api/v1/runs").json()
    assert [(r["dag_id"], r["state"]) for r in page["items"]] == [
        ("etl", "success"), ("flaky", "failed"), ("etl", "success")]
    assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
    failed = api.get("/api/v1/runs?state=failed").json()
    assert [r["run_id"] for r in failed["items"]] == [FLAKY] and failed["total"] == 1
    both = api.get("/api/v1/runs?state=failed&state=success&dag_id=etl").json()
    assert [r["run_id"] for r in both["items"]] == [ETL_2, ETL_1]
    day2 = api.get("/api/v1/dags/etl/runs?start=2024-01-02&end=2024-01-02T23:59:59").json()
    assert [r["run_id"] for r in day2["items"]] == [ETL_2] and day2["total"] == 1
    typed = api.get("/api/v1/runs?run_type=test").json()
    assert [r["run_id"] for r in typed["items"]] == [FLAKY]
    run = page["items"][0]
    assert run["duration"] is not None and run["duration"] >= 0


def test_run_filters_that_make_no_sense_are_refused(api: TestClient) -> None:
    bad_state = _error(api.get("/api/v1/runs?state=green"), 400)
    assert bad_state["message"] == "'green' is not a run state"
    assert bad_state["hint"] == "run states: queued, running, success, failed"
    backwards = _error(api.get("/api/v1/runs?start=2024-02-01&end=2024-01-01"), 400)
    assert backwards["hint"] == "swap start and end"
    assert _error(api.get("/api/v1/runs?limit=501"), 422)["code"] == "invalid"
    assert _error(api.get("/api/v1/runs?offset=-1"), 422)["code"] == "invalid"
    assert _error(api.get("/api/v1/dags/nope/runs"), 404)["message"] == "no DAG 'nope'"


def test_one_run_has_its_task_instances_in_order_with_counts(api: TestClient) -> None:
    body = api.get(_run_url("flaky", FLAKY)).json()
    assert body["state"] == "failed"
    assert [(t["task_id"], t["state"], t["try_number"]) for t in body["task_instances"]] == [
        ("ok", "success", 1), ("boom", "failed", 2), ("after", "upstream_failed", 0)]
    assert body["counts"] == {"success": 1, "failed": 1, "upstream_failed": 1}
    assert _error(api.get(_run_url("flaky", "nope")), 400)["message"] == "DAG 'flaky' has no run 'nope'"


def test_pagination_over_a_thousand_runs_is_complete_and_ordered(api: TestClient, web_home: WebHome) -> None:
    from headwater.orchestration.kernel import new_task_instances
    from headwater.orchestration.states import RunState
    from headwater.store.base import DagRunRecord

    spec = web_home.store.get_dag("flaky").spec  # type: ignore[union-attr]
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    states = [RunState.SUCCESS, RunState.FAILED, RunState.QUEUED]
    for i in range(1000):
        when = start + dt.timedelta(hours=i)
        web_home.store.create_run(
            DagRunRecord("flaky", f"bulk__{i:04d}", when, when, when, "manual", state=states[i % 3]),
            new_task_instances(spec, f"bulk__{i:04d}"))
    seen: list[str] = []
    offset = 0
    while True:
        page = api.get(f"/api/v1/dags/flaky/runs?run_type=manual&limit=97&offset={offset}").json()
        assert page["total"] == 1000
        if not page["items"]:
            break
        seen += [r["run_id"] for r in page["items"]]
        offset += 97
    assert seen == [f"bulk__{i:04d}" for i in reversed(range(1000))]  # newest first, none twice, none lost
    failed = api.get("/api/v1/dags/flaky/runs?run_type=manual&state=failed&limit=500").json()
    assert failed["total"] == 333 and len(failed["items"]) == 333
    assert all(r["state"] == "failed" for r in failed["items"])
    window = api.get("/api/v1/runs?dag_id=flaky&start=2020-01-02T00:00:00&end=2020-01-02T23:59:59&limit=10").json()
    assert window["total"] == 24 and [r["run_id"] for r in window["items"]][:2] == ["bulk__0047", "bulk__0046"]
    last = api.get("/api/v1/dags/flaky/runs?run_type=manual&limit=7&offset=996").json()
    assert [r["run_id"] for r in last["items"]] == ["bulk__0003", "bulk__0002", "bulk__0001", "bulk__0000"]


# -- task instances and logs --------------------------------------------------------------


def test_task_instance_shows_tries_times_operator_and_rendered_fields(api: TestClient) -> None:
    body = api.get(f"{_run_url('flaky', FLAKY)}/tasks/boom").json()
    assert (body["state"], body["try_number"], body["max_tries"], body["operator"]) == ("failed", 2, 2, "BashOperator")
    assert body["rendered"] == {"bash_command": "echo about to fail; exit 3"}
    assert [(t["try_number"], t["state"], t["has_log"]) for t in body["tries"]] == [(1, "failed", True),
                                                                                    (2, "failed", True)]
    assert body["tries"][0]["reason"] == "bash exited with code 3"
    assert body["upstream"] == ["ok"] and body["downstream"] == ["after"] and body["run_state"] == "failed"
    templated = api.get(f"{_run_url('etl', ETL_2)}/tasks/transform").json()
    assert templated["rendered"] == {"bash_command": "echo transform 2024-01-02"}
    error = _error(api.get(f"{_run_url('flaky', FLAKY)}/tasks/bam"), 404)
    assert error["message"] == f"run {FLAKY!r} of DAG 'flaky' has no task 'bam'"


def test_log_of_each_try_and_reading_on_from_an_offset(api: TestClient) -> None:
    url = f"{_run_url('flaky', FLAKY)}/tasks/boom/log"
    first = api.get(f"{url}?try_number=1").json()
    assert first["try_number"] == 1 and "try 1 of flaky.boom" in first["text"] and "about to fail" in first["text"]
    assert first["complete"] is True and first["next_offset"] == len(first["text"].encode())
    latest = api.get(url).json()
    assert latest["try_number"] == 2 and "try 2 of flaky.boom" in latest["text"]
    tail = api.get(f"{url}?try_number=1&offset=10").json()
    assert tail["text"] == first["text"][10:] and tail["offset"] == 10
    done = api.get(f"{url}?try_number=1&offset={first['next_offset']}").json()
    assert done["text"] == "" and done["complete"] is True
    error = _error(api.get(f"{url}?try_number=3"), 400)
    assert (error["message"], error["hint"]) == (f"boom has no try 3 in {FLAKY}", "its tries: 1, 2")
    never = _error(api.get(f"{_run_url('flaky', FLAKY)}/tasks/after/log"), 400)
    assert never["message"] == f"flaky.after has not run in {FLAKY}"


# -- clear and mark -----------------------------------------------------------------------


def test_clear_with_downstream_resets_tasks_and_the_scheduler_reruns_them(api: TestClient, web_home: WebHome) -> None:
    body = api.post(f"{_run_url('flaky', FLAKY)}/clear", json={"task_ids": ["boom"], "downstream": True}).json()
    assert body["cleared"] == ["after", "boom"] and body["run"]["state"] == "queued"
    tis = {t["task_id"]: t for t in api.get(_run_url("flaky", FLAKY)).json()["task_instances"]}
    assert (tis["ok"]["state"], tis["boom"]["state"], tis["after"]["state"]) == ("success", "none", "none")
    from headwater.executor.inline import InlineExecutor
    from headwater.orchestration.scheduler import Scheduler, SchedulerOptions

    Scheduler(web_home.store, InlineExecutor(), web_home.settings,
              SchedulerOptions(only_runs={("flaky", FLAKY)}, take_lease=False)).run()
    boom = api.get(f"{_run_url('flaky', FLAKY)}/tasks/boom").json()
    assert boom["try_number"] == 4 and [t["try_number"] for t in boom["tries"]] == [1, 2, 3, 4]
    assert api.get(_run_url("flaky", FLAKY)).json()["state"] == "failed"


def test_clear_without_downstream_and_of_unknown_tasks(api: TestClient) -> None:
    body = api.post(f"{_run_url('flaky', FLAKY)}/clear", json={"task_ids": ["boom"]}).json()
    assert body["cleared"] == ["boom"]
    error = _error(api.post(f"{_run_url('flaky', FLAKY)}/clear", json={"task_ids": ["bam"]}), 404)
    assert error["message"] == "DAG 'flaky' has no task 'bam'"
    assert _error(api.post(f"{_run_url('flaky', FLAKY)}/clear", json={"task_ids": []}), 422)["code"] == "invalid"


def test_mark_success_with_downstream_settles_the_run(api: TestClient, web_home: WebHome) -> None:
    body = api.post(f"{_run_url('flaky', FLAKY)}/mark",
                    json={"task_ids": ["boom"], "state": "success", "downstream": True}).json()
    assert body["marked"] == ["after", "boom"] and body["run"]["state"] == "success"
    ti = web_home.store.get_task_instance("flaky", FLAKY, "boom")
    assert ti is not None and ti.state.value == "success" and ti.reason == "marked success by hand"


def test_mark_failed_fails_a_finished_run_and_a_partial_mark_queues_it(api: TestClient) -> None:
    body = api.post(f"{_run_url('etl', ETL_1)}/mark", json={"task_ids": ["load"], "state": "failed"}).json()
    assert body["marked"] == ["load"] and body["run"]["state"] == "failed"
    api.post(f"{_run_url('flaky', FLAKY)}/clear", json={"task_ids": ["after"]})
    partial = api.post(f"{_run_url('flaky', FLAKY)}/mark", json={"task_ids": ["boom"], "state": "success"}).json()
    assert partial["run"]["state"] == "queued"  # "after" has yet to run: the scheduler goes on
    bad = _error(api.post(f"{_run_url('flaky', FLAKY)}/mark", json={"task_ids": ["ok"], "state": "running"}), 422)
    assert "state" in bad["message"]


# -- models -------------------------------------------------------------------------------


def test_models_list_and_a_model_with_versions_side_by_side(api: TestClient) -> None:
    [model] = api.get("/api/v1/models").json()
    assert (model["name"], model["versions"], model["latest"], model["aliases"]) == ("house_prices", 2, 2,
                                                                                    {"champion": 1})
    body = api.get("/api/v1/models/house_prices").json()
    assert [(v["version"], v["status"], v["aliases"]) for v in body["versions"]] == [
        (2, "registered", []), (1, "approved", ["champion"])]
    assert body["metric_table"]["test"]["rmse"] == {"1": 1.0, "2": 0.9}
    assert [(a["alias"], a["version"]) for a in body["aliases"]] == [("champion", 1)]
    [move] = body["history"]
    assert (move["from_version"], move["to_version"], move["who"], move["why"]) == (
        None, 1, "ana", "first model, checked by hand")
    version = api.get("/api/v1/models/house_prices/versions/2").json()
    assert version["lineage"]["run_id"] == ETL_1 and version["profile"]["rooms"]["count"] == 10
    assert version["signature"]["inputs"] == [{"name": "rooms", "dtype": "Float64"}]


def test_promote_and_reject_need_a_reason_and_record_who(api: TestClient) -> None:
    url = "/api/v1/models/house_prices/versions"
    assert _error(api.post(f"{url}/2/promote", json={"reason": ""}), 422)["code"] == "invalid"
    assert _error(api.post(f"{url}/2/promote", json={"reason": "   "}), 400)["message"] == "promote needs a reason"
    promoted = api.post(f"{url}/2/promote", json={"reason": "lower test RMSE", "who": "bea"}).json()
    assert (promoted["status"], promoted["status_by"], promoted["aliases"]) == ("approved", "bea", ["champion"])
    history = api.get("/api/v1/models/house_prices").json()["history"]
    assert [(h["from_version"], h["to_version"], h["who"], h["why"]) for h in history] == [
        (1, 2, "bea", "lower test RMSE"), (None, 1, "ana", "first model, checked by hand")]  # newest first
    refused = _error(api.post(f"{url}/2/reject", json={"reason": "oops"}), 400)
    assert "is the champion and cannot be rejected" in refused["message"]
    rejected = api.post(f"{url}/1/reject", json={"reason": "worse"}).json()
    assert (rejected["status"], rejected["status_reason"], rejected["status_by"]) == ("rejected", "worse", "api")
    assert _error(api.post(f"{url}/1/promote", json={"reason": "again"}), 400)["code"] == "bad_request"
    assert api.post(f"{url}/1/approve", json={"reason": "overruled", "force": True}).json()["status"] == "approved"


def test_unknown_models_and_versions_are_404s(api: TestClient) -> None:
    error = _error(api.get("/api/v1/models/house_prises"), 404)
    assert "house_prises" in error["message"] and "house_prices" in (error["hint"] or "")
    assert _error(api.get("/api/v1/models/house_prices/versions/9"), 404)["code"] == "not_found"
    assert _error(api.post("/api/v1/models/house_prices/versions/2/bless", json={"reason": "x"}), 422)


# -- streams ------------------------------------------------------------------------------


def test_streams_show_topics_groups_lag_and_dead_letters(api: TestClient, web_home: WebHome) -> None:
    from headwater.stream.broker import TopicPartition
    from headwater.stream.connect import open_broker
    from headwater.stream.dlq import (
        ERROR_MESSAGE,
        ERROR_STEP,
        ERROR_TYPE,
        SOURCE_OFFSET,
        SOURCE_PARTITION,
        SOURCE_TOPIC,
    )

    assert api.get("/api/v1/streams").json()["topics"] == []
    broker = open_broker(web_home.settings)
    try:
        broker.create_topic("houses", partitions=2)
        broker.create_topic("scorer.dlq")
        producer = broker.producer()
        values = [b'{"rooms": %d}' % i for i in range(10)]
        producer.produce_batch("houses", values, partitions=[i % 2 for i in range(10)])
        for offset, value in enumerate([b"not json", b"\xff\xfe"]):
            producer.produce("scorer.dlq", value, key=b"k%d" % offset, headers=(
                (ERROR_TYPE, b"msgspec.DecodeError"), (ERROR_MESSAGE, b"JSON is malformed <b>"),
                (ERROR_STEP, b"decode:houses"), (SOURCE_TOPIC, b"houses"), (SOURCE_PARTITION, b"0"),
                (SOURCE_OFFSET, str(offset).encode())))
        producer.flush()
        producer.close()
        broker.groups().commit("scorer", {TopicPartition("houses", 0): 3, TopicPartition("houses", 1): 5})
    finally:
        broker.close()
    body = api.get("/api/v1/streams").json()
    topics = {t["name"]: t for t in body["topics"]}
    assert [(p["partition"], p["start_offset"], p["end_offset"]) for p in topics["houses"]["partitions"]] == [
        (0, 0, 5), (1, 0, 5)]
    assert (topics["houses"]["records"], topics["scorer.dlq"]["is_dead_letter"]) == (10, True)
    [group] = body["groups"]
    assert (group["group"], group["total_lag"]) == ("scorer", 2)
    assert [(p["partition"], p["committed"], p["lag"]) for p in group["partitions"]] == [(0, 3, 2), (1, 5, 0)]
    assert api.get("/api/v1/streams/topics/houses").json() == topics["houses"]
    assert api.get("/api/v1/streams/groups/scorer").json() == group
    dead = api.get("/api/v1/streams/apps/scorer/dead-letters").json()
    assert [(d["dlq_offset"], d["source_offset"], d["error_type"], d["step"]) for d in dead] == [
        (1, 1, "msgspec.DecodeError", "decode:houses"), (0, 0, "msgspec.DecodeError", "decode:houses")]
    assert (dead[1]["value"], dead[1]["binary"], dead[0]["binary"]) == ("not json", False, True)
    assert dead[1]["error_message"] == "JSON is malformed <b>"
    assert len(api.get("/api/v1/streams/apps/scorer/dead-letters?limit=1").json()) == 1
    assert _error(api.get("/api/v1/streams/apps/nope/dead-letters"), 400)["message"] == \
        "app 'nope' has no dead-letter topic 'nope.dlq'"
    assert _error(api.get("/api/v1/streams/topics/nope"), 404)["code"] == "not_found"
    assert _error(api.get("/api/v1/streams/groups/nobody"), 400)["message"] == "group 'nobody' has committed no offsets"


# -- errors and the schema ----------------------------------------------------------------


def test_unknown_routes_and_methods_answer_json_errors(api: TestClient) -> None:
    assert _error(api.get("/api/v1/nothing"), 404)["hint"] == "GET /docs lists the endpoints"
    assert _error(api.put("/api/v1/dags/etl/pause"), 405)["code"] == "method_not_allowed"


def test_openapi_documents_every_route_with_tags_and_response_models(api: TestClient) -> None:
    schema = api.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    assert {"/api/v1/dags", "/api/v1/runs", "/api/v1/models/{name}", "/api/v1/streams",
            "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/log"} <= set(paths)
    for path, methods in paths.items():
        if not path.startswith("/api/"):
            continue
        for method, op in methods.items():
            assert op.get("tags"), f"{method} {path} has no tag"
            ok = op["responses"].get("200") or op["responses"].get("201") or op["responses"].get("204")
            assert ok is not None, f"{method} {path}"
            if "204" not in op["responses"]:
                assert "$ref" in str(ok["content"]["application/json"]["schema"]), f"{method} {path} has no model"
    assert "DagList" in schema["components"]["schemas"]
    assert api.get("/docs").status_code == 200


def test_the_cli_triggers_through_the_same_service(web_home: WebHome) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, HEADWATER_HOME=str(web_home.settings.home))
    cmd = [sys.executable, "-m", "headwater", "dags", "trigger", "etl", "--date", "2024-03-01"]
    bad = subprocess.run([*cmd, "--conf", '{"row": 1}'], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "DAG 'etl' has no param 'row'" in bad.stderr
    assert "hint: its params: api_password, db_url, rows" in bad.stderr
    ok = subprocess.run([*cmd, "--conf", '{"rows": 2}'], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    run = web_home.store.get_run("etl", "manual__2024-03-01T00:00:00+00:00")
    assert run is not None and run.conf == {"rows": 2}


def test_streams_show_running_app_instances_from_their_status_files(api: TestClient, web_home: WebHome) -> None:
    import os
    import socket

    from headwater.monitoring.status import instance_id, status_path, write_status

    now = dt.datetime.now(dt.UTC)
    host = socket.gethostname()
    live = status_path(web_home.settings, "scorer", instance_id(host, os.getpid()))
    write_status(live, {
        "format": 1, "app": "scorer", "group_id": "scorer", "instance_id": instance_id(host, os.getpid()),
        "pid": os.getpid(), "hostname": host, "state": "running", "heartbeat": now.isoformat(),
        "counters": {"records_in": 100, "records_out": 97, "records_dead_lettered": 3}, "lag": {"total": 12},
        "error": None, "sources": ["kafka://svc:hunter2-very-secret@broker:9092"],
    })
    old = status_path(web_home.settings, "scorer", "otherbox-1")
    write_status(old, {"format": 1, "app": "scorer", "instance_id": "otherbox-1", "pid": 1, "hostname": "otherbox",
                       "state": "running", "heartbeat": (now - dt.timedelta(minutes=5)).isoformat()})
    apps = api.get("/api/v1/streams/apps").json()
    by_id = {a["instance_id"]: a for a in apps}
    assert len(apps) == 2 == len(by_id)
    assert (by_id["otherbox-1"]["state"], by_id["otherbox-1"]["stale"]) == ("stopped", True)
    first = by_id[instance_id(host, os.getpid())]
    assert (first["state"], first["stale"], first["app"]) == ("running", False, "scorer")
    assert (first["records_in"], first["records_out"], first["dead_lettered"], first["lag"]) == (100, 97, 3, 12)
    assert first["status"]["sources"] == ["kafka://svc:***@broker:9092"]
    assert api.get("/api/v1/streams").json()["apps"] == apps
    assert api.get("/api/v1/streams/apps?app=nobody").json() == []
    assert live.exists() and old.exists()  # a GET deletes nothing


def test_a_running_try_log_is_read_on_as_it_grows_and_the_run_cannot_be_marked(api: TestClient,
                                                                               web_home: WebHome) -> None:
    from headwater.orchestration.states import TaskState
    from headwater.store.base import TryRecord, UnitOfWork

    store = web_home.store
    ti = store.get_task_instance("flaky", FLAKY, "after")
    assert ti is not None
    ti.state, ti.try_number = TaskState.RUNNING, 1
    log = web_home.settings.logs_folder / "dag_id=flaky" / "after-attempt=1.log"
    log.write_bytes(b"line 1\n")
    attempt = TryRecord("flaky", FLAKY, "after", 1, TaskState.RUNNING, log_path=str(log))
    store.commit(UnitOfWork(task_instances=[ti], tries=[attempt]))
    url = f"{_run_url('flaky', FLAKY)}/tasks/after/log"
    first = api.get(url).json()
    assert (first["text"], first["complete"], first["state"]) == ("line 1\n", False, "running")
    with log.open("ab") as fh:
        fh.write("line 2 é".encode()[:-1])  # the writer is half-way through "é"
    second = api.get(f"{url}?offset={first['next_offset']}").json()
    assert second["text"] == "line 2 " and second["complete"] is False  # the cut character waits
    with log.open("ab") as fh:
        fh.write("é".encode()[1:] + b"\n")
    third = api.get(f"{url}?offset={second['next_offset']}").json()
    assert third["text"] == "é\n"
    refused = _error(api.post(f"{_run_url('flaky', FLAKY)}/mark", json={"task_ids": ["ok"], "state": "failed"}), 400)
    assert refused["message"] == f"run {FLAKY} of flaky has tasks running now (after); nothing marked"
    attempt.state, ti.state = TaskState.SUCCESS, TaskState.SUCCESS
    store.commit(UnitOfWork(task_instances=[ti], tries=[attempt]))
    assert api.get(f"{url}?offset={third['next_offset']}").json()["complete"] is True


def test_openapi_documents_the_error_body(api: TestClient) -> None:
    schema = api.get("/api/v1/openapi.json").json()
    op = schema["paths"]["/api/v1/dags/{dag_id}"]["get"]
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schema["components"]["schemas"]["ErrorDetail"]["properties"]) == {"code", "message", "hint"}


SCHEMED = """
from datetime import datetime

from headwater import DAG, EmptyOperator, Param

with DAG("schemed", schedule=None, start_date=datetime(2024, 1, 1), params={
    "region": Param("all", "where to load", enum=["all", "eu", "us"]),
    "key": Param("s3cr3t-value-xyz", type="string", secret=True),
    "n": Param(type="integer", minimum=1),
}) as dag:
    EmptyOperator(task_id="t")
"""


def test_trigger_checks_param_schemas_and_keeps_secret_defaults(api: TestClient, web_home: WebHome) -> None:
    web_home.write_dag("schemed.py", SCHEMED)
    web_home.refresh()
    dag = api.get("/api/v1/dags/schemed")
    assert "s3cr3t-value-xyz" not in dag.text
    body = dag.json()
    assert body["params"]["key"] == "***"
    schema = body["params_schema"]
    assert schema["region"]["schema"] == {"enum": ["all", "eu", "us"]} and schema["region"]["description"] == \
        "where to load"
    assert (schema["key"]["secret"], schema["n"]["required"], schema["n"]["schema"]) == (
        True, True, {"type": "integer", "minimum": 1})
    source = api.get("/api/v1/dags/schemed/source")
    assert "s3cr3t-value-xyz" not in source.text and 'Param("***", type="string", secret=True)' in \
        source.json()["source"]
    url = "/api/v1/dags/schemed/runs"
    assert "has no default and the conf does not give it" in _error(api.post(url, json={"conf": {}}), 400)["message"]
    assert "'n'" in _error(api.post(url, json={"conf": {"n": 0}}), 400)["message"]
    assert "'region'" in _error(api.post(url, json={"conf": {"n": 1, "region": "mars"}}), 400)["message"]
    run = api.post(url, json={"conf": {"n": 2, "key": "***", "region": "eu"}})
    assert run.status_code == 201, run.text
    # The secret sent back as shown ("***") keeps its default: it is not stored as "***".
    assert web_home.store.get_run("schemed", run.json()["run_id"]).conf == {"n": 2, "region": "eu"}  # type: ignore[union-attr]
