"""Security of the API: no path traversal (logs and DAG sources read only from their folders), markup in
names comes back escaped, secrets are masked everywhere, and no endpoint imports user code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import SECRET_PASSWORD, WebHome

RUN = quote(WebHome.flaky_run, safe="")
LOG = f"/api/v1/dags/flaky/runs/{RUN}/tasks/boom/log"
PASSWD_MARK = "root:"  # the first line of /etc/passwd


def _set_log_path(home: WebHome, try_number: int, log_path: str) -> None:
    """Point a try's recorded log at ``log_path``, as a tampered or corrupt store would."""
    from headwater.store.base import UnitOfWork

    [chosen] = [t for t in home.store.list_tries("flaky", home.flaky_run, "boom") if t.try_number == try_number]
    chosen.log_path = log_path
    home.store.commit(UnitOfWork(tries=[chosen]))


@pytest.mark.parametrize("log_path", [
    "../../etc/passwd",
    "/etc/passwd",
    "../headwater.db",
    "dag_id=flaky/../../../../../../etc/passwd",
    "LOGS/../../etc/passwd",
    "/proc/self/environ",
    "bad\x00name.log",
    "",
])
def test_a_log_path_outside_the_logs_folder_is_never_read(api: TestClient, web_home: WebHome, log_path: str) -> None:
    _set_log_path(web_home, 1, log_path.replace("LOGS", str(web_home.settings.logs_folder)))
    response = api.get(f"{LOG}?try_number=1")
    assert response.status_code == 400, response.text
    assert PASSWD_MARK not in response.text and "SQLite" not in response.text
    message = response.json()["error"]["message"]
    assert "outside the logs folder" in message or "no log file" in message
    # The task page no longer offers that log either.
    tries = api.get(f"/api/v1/dags/flaky/runs/{RUN}/tasks/boom").json()["tries"]
    assert [t["has_log"] for t in tries] == [False, True]


def test_a_symbolic_link_in_the_logs_folder_pointing_out_is_refused(api: TestClient, web_home: WebHome) -> None:
    link = web_home.settings.logs_folder / "evil.log"
    link.symlink_to("/etc/passwd")
    _set_log_path(web_home, 1, str(link))
    response = api.get(f"{LOG}?try_number=1")
    assert response.status_code == 400 and PASSWD_MARK not in response.text


@pytest.mark.parametrize("path", [
    f"/api/v1/dags/flaky/runs/{RUN}/tasks/..%2F..%2F..%2F..%2Fetc%2Fpasswd/log",
    f"/api/v1/dags/flaky/runs/{RUN}/tasks/%2e%2e%2f%2e%2e%2fetc%2fpasswd/log",
    f"/api/v1/dags/flaky/runs/{RUN}/tasks/%252e%252e%252fetc%252fpasswd/log",
    f"/api/v1/dags/flaky/runs/{RUN}/tasks/..%5c..%5cetc%5cpasswd/log",
    "/api/v1/dags/flaky/runs/..%2F..%2Fetc%2Fpasswd/tasks/boom/log",
    "/api/v1/dags/..%2F..%2F..%2Fetc%2Fpasswd/source",
    "/api/v1/dags/%2Fetc%2Fpasswd/source",
    "/api/v1/dags/....%2F%2F....%2F%2Fetc%2Fpasswd/source",
    "/api/v1/dags/flaky/../../../../etc/passwd",
    "/api/v1/streams/apps/..%2F..%2Fetc%2Fpasswd/dead-letters",
    "/api/v1/streams/topics/..%2F..%2Fheadwater.db",
    "/api/v1/models/..%2F..%2Fetc%2Fpasswd",
])
def test_traversal_in_urls_reads_nothing(api: TestClient, path: str) -> None:
    response = api.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert PASSWD_MARK not in response.text and "SQLite format" not in response.text
    assert "error" in response.json()


def test_a_dag_whose_file_lies_outside_the_dag_folder_shows_no_source(api: TestClient, web_home: WebHome) -> None:
    import dataclasses

    spec = web_home.store.get_dag("flaky").spec  # type: ignore[union-attr]
    web_home.store.upsert_dag(dataclasses.replace(spec, dag_id="outsider", fileloc="/etc/passwd"))
    response = api.get("/api/v1/dags/outsider/source")
    assert response.status_code == 400 and PASSWD_MARK not in response.text
    assert response.json()["error"]["message"] == "the file of DAG 'outsider' is outside the DAG folder; " \
                                                  "its source is not shown"


# -- XSS ----------------------------------------------------------------------------------


def test_markup_in_names_comes_back_escaped_in_json(api: TestClient) -> None:
    for path in ("/api/v1/dags", "/api/v1/dags/xss_dag", "/api/v1/dags/xss_dag/source"):
        response = api.get(path)
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in response.text and "<img" not in response.text, path
        assert "\\u003cscript\\u003e" in response.text, path
    dag = api.get("/api/v1/dags/xss_dag").json()  # parsers read the same strings back
    assert dag["description"] == "<script>alert('dag')</script>"
    assert dag["owner"] == "<script>alert('owner')</script>"
    assert dag["tags"] == ["<img src=x onerror=alert(1)>"]
    assert dag["params"] == {"note": "<script>alert('param')</script>"}


def test_markup_in_a_url_is_escaped_in_the_error(api: TestClient) -> None:
    response = api.get("/api/v1/dags/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert response.status_code == 404
    assert "<img" not in response.text
    assert json.loads(response.text)["error"]["message"] == "no DAG '<img src=x onerror=alert(1)>'"


# -- secrets ------------------------------------------------------------------------------

LEAKY = """
from datetime import datetime

from headwater import DAG, BashOperator

with DAG("leaky", schedule=None, start_date=datetime(2024, 1, 1),
         params={"db_password": "SECRET", "warehouse": "snowflake://etl:SECRET@acme/db"}) as dag:
    BashOperator(task_id="connect",
                 bash_command="echo using {{ params.db_password }} and {{ params.warehouse }}")
""".replace("SECRET", SECRET_PASSWORD)


def test_secrets_are_masked_in_every_response(api: TestClient, web_home: WebHome) -> None:
    web_home.write_dag("leaky.py", LEAKY)
    web_home.refresh()
    run_id = web_home.run_dag("leaky", "2024-01-01")
    log_text = Path(web_home.store.list_tries("leaky", run_id, "connect")[0].log_path or "").read_text()
    assert SECRET_PASSWORD in log_text  # the task really printed it: the API must hide it
    triggered = api.post("/api/v1/dags/etl/runs", json={"conf": {"api_password": SECRET_PASSWORD, "rows": 1}})
    assert triggered.status_code == 201 and triggered.json()["conf"] == {"api_password": "***", "rows": 1}
    run = quote(run_id, safe="")
    bodies = {path: api.get(path) for path in [
        "/api/v1/dags", "/api/v1/dags/leaky", "/api/v1/dags/leaky/source", "/api/v1/dags/etl", "/api/v1/runs",
        f"/api/v1/dags/leaky/runs/{run}", f"/api/v1/dags/leaky/runs/{run}/tasks/connect",
        f"/api/v1/dags/leaky/runs/{run}/tasks/connect/log",
    ]}
    for path, response in bodies.items():
        assert response.status_code == 200, path
        assert SECRET_PASSWORD not in response.text, path
    rendered = bodies[f"/api/v1/dags/leaky/runs/{run}/tasks/connect"].json()["rendered"]["bash_command"]
    assert rendered == "echo using *** and snowflake://etl:***@acme/db"
    log = bodies[f"/api/v1/dags/leaky/runs/{run}/tasks/connect/log"].json()["text"]
    assert "using *** and snowflake://etl:***@acme/db" in log
    assert bodies["/api/v1/dags/leaky"].json()["params"] == {"db_password": "***",
                                                              "warehouse": "snowflake://etl:***@acme/db"}


def test_masking_rules() -> None:
    from headwater.web.services.masking import Masker, is_secret_key, mask_mapping, mask_urls

    assert mask_urls("postgresql+psycopg://u:p%40ss@h:5432/db and kafka://k:xyz@b") == \
        "postgresql+psycopg://u:***@h:5432/db and kafka://k:***@b"
    assert mask_urls("https://example.org/a:b@c no") == "https://example.org/a:b@c no"  # not a user:password
    assert [is_secret_key(k) for k in ("API_TOKEN", "db_password", "aws_secret_access_key", "apiKey", "x-api-key",
                                       "rows", "owner", "max_tokens", "passenger_count", "keyboard")] == \
        [True, True, True, True, True, False, False, False, False, False]
    assert mask_mapping({"a": {"password": {"nested": 1}}, "list": [{"token": "t"}], "n": None}) == \
        {"a": {"password": {"nested": "***"}}, "list": [{"token": "***"}], "n": None}
    mask = Masker(["longsecret", "longsecret-and-more", "ab"])
    assert mask("x longsecret-and-more y longsecret ab") == "x *** y *** ab"  # too short to mask: "ab"


# -- no user code -------------------------------------------------------------------------


def test_no_endpoint_imports_a_dag_file(api: TestClient, web_home: WebHome, tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    web_home.write_dag("trap.py", f"open({str(marker)!r}, 'w').close()\n")
    run = quote(web_home.flaky_run, safe="")
    for path in ["/api/v1/dags", "/api/v1/dags/etl", "/api/v1/dags/etl/source", "/api/v1/import-errors",
                 "/api/v1/runs", f"/api/v1/dags/flaky/runs/{run}", f"/api/v1/dags/flaky/runs/{run}/tasks/boom",
                 f"/api/v1/dags/flaky/runs/{run}/tasks/boom/log", "/api/v1/models", "/api/v1/streams"]:
        assert api.get(path).status_code == 200, path
    assert api.post("/api/v1/dags/etl/runs", json={}).status_code == 201
    assert api.post(f"/api/v1/dags/flaky/runs/{run}/clear", json={"task_ids": ["boom"]}).status_code == 200
    assert not marker.exists(), "an endpoint imported a DAG file"
    assert os.path.exists(web_home.dags / "trap.py")


def test_a_server_on_loopback_refuses_other_host_names(web_home: WebHome) -> None:
    from headwater.web.app import create_app

    app = create_app(web_home.settings, token="t", read_only_open=True, allowed_hosts=["127.0.0.1", "localhost"])
    client = TestClient(app, base_url="http://127.0.0.1:8080")
    assert client.get("/api/v1/dags").status_code == 200
    assert client.get("/api/v1/dags", headers={"Host": "localhost:8080"}).status_code == 200
    rebound = client.get("/api/v1/dags", headers={"Host": "evil.example:8080"})
    assert rebound.status_code == 400 and "etl" not in rebound.text
