"""The UI pages over the populated home (tests/web/conftest.py): each renders with its content,
names users chose are escaped, forms need the CSRF token, long histories paginate."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import SECRET_PASSWORD, TOKEN, WebHome

PAGE = {"Accept": "text/html"}


def login(client: TestClient, name: str = "ana") -> str:
    """Log the client in through the login form; the CSRF token of its session."""
    r = client.post("/login", data={"token": TOKEN, "name": name, "next": "/dags"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/dags", headers=PAGE)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the page has no CSRF field"
    return match.group(1)


@pytest.fixture
def ui(make_client: Callable[..., TestClient]) -> TestClient:
    """A browser-like client, logged in."""
    client = make_client()
    client.csrf = login(client)  # type: ignore[attr-defined]
    return client


def test_pages_need_login(anon: TestClient) -> None:
    r = anon.get("/dags", headers=PAGE, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    login_page = anon.get("/login", headers=PAGE)
    assert login_page.status_code == 200 and 'name="token"' in login_page.text


def test_wrong_token_is_refused_on_the_login_page(anon: TestClient) -> None:
    r = anon.post("/login", data={"token": "nope", "name": "x"}, headers=PAGE)
    assert r.status_code == 401
    assert "wrong token" in r.text
    assert anon.get("/dags", headers=PAGE, follow_redirects=False).status_code == 303


def test_dag_list(ui: TestClient) -> None:
    r = ui.get("/dags", headers=PAGE)
    assert r.status_code == 200
    text = r.text
    for dag_id in ("etl", "flaky", "xss_dag"):
        assert f'data-dag-id="{dag_id}"' in text
    assert "<td>data-team</td>" in text and "<code>0 0 * * *</code>" in text
    assert 'class="dot s-success"' in text and 'class="dot s-failed"' in text  # etl ok, flaky failed
    # the import error of broken.py with its line
    errors = text[text.index('id="import-errors"'):]
    assert "broken.py" in errors and "<td class=\"num\">3</td>" in errors
    assert SECRET_PASSWORD not in text  # params shown in the trigger form are masked
    assert ui.get("/dags/fragment", headers=PAGE).status_code == 200


def test_dag_views(ui: TestClient, web_home: WebHome) -> None:
    run = web_home.etl_runs[1]
    grid = ui.get("/dags/etl/grid", headers=PAGE)
    assert grid.status_code == 200
    assert grid.text.count('class="cell s-success"') == 6  # 3 tasks x 2 runs
    assert f'data-run-id="{run}"' in grid.text
    graph = ui.get("/dags/etl/graph", params={"run_id": run}, headers=PAGE)
    assert graph.status_code == 200 and "<svg" in graph.text
    assert all(f'data-task-id="{t}" data-state="success"' in graph.text for t in ("extract", "transform", "load"))
    assert graph.text.count('class="edge"') == 2
    gantt = ui.get("/dags/etl/gantt", params={"run_id": run}, headers=PAGE)
    assert gantt.status_code == 200 and gantt.text.count('<rect class="s-success"') == 3
    runs = ui.get("/dags/etl/runs", headers=PAGE)
    assert runs.status_code == 200 and run in runs.text and "2 runs" in runs.text
    code = ui.get("/dags/etl/code", headers=PAGE)
    assert code.status_code == 200 and "extract &gt;&gt; transform &gt;&gt; load" in code.text
    assert SECRET_PASSWORD not in code.text
    # live parts of a finished run tell htmx to stop polling (286); a queued run's keep polling
    assert ui.get("/dags/etl/graph/fragment", params={"run_id": run}, headers=PAGE).status_code == 286
    queued = ui.post("/dags/etl/trigger", data={"csrf_token": ui.csrf}, headers=PAGE)  # type: ignore[attr-defined]
    new_run = web_home.store.list_runs("etl", limit=1)[0].run_id
    assert queued.status_code == 200 and new_run.startswith("manual__")
    for view in ("graph", "gantt"):
        assert ui.get(f"/dags/etl/{view}/fragment", params={"run_id": new_run}, headers=PAGE).status_code == 200
    assert 'data-state="none"' in ui.get("/dags/etl/graph/fragment", params={"run_id": new_run}, headers=PAGE).text
    flaky = ui.get("/dags/flaky/graph", headers=PAGE)
    assert 'data-task-id="boom" data-state="failed"' in flaky.text
    assert 'data-task-id="after" data-state="upstream_failed"' in flaky.text


def test_unknown_dag_is_an_error_page(ui: TestClient) -> None:
    r = ui.get("/dags/nope/grid", headers=PAGE)
    assert r.status_code == 404
    assert "no DAG &#39;nope&#39;" in r.text and "<nav" in r.text


def test_task_try_page_and_log(ui: TestClient, web_home: WebHome) -> None:
    run = web_home.flaky_run
    r = ui.get("/dags/flaky/tasks/boom", params={"run_id": run}, headers=PAGE)
    assert r.status_code == 200
    assert "BashOperator" in r.text and "try 1" in r.text and "try 2" in r.text
    assert "about to fail" in r.text  # the log of the latest try
    assert 'id="log-tail"' not in r.text  # finished: no poller
    first = ui.get("/dags/flaky/tasks/boom", params={"run_id": run, "try": "1"}, headers=PAGE)
    assert first.status_code == 200 and "about to fail" in first.text
    rendered = ui.get("/dags/etl/tasks/transform", params={"run_id": web_home.etl_runs[0]}, headers=PAGE)
    assert "echo transform 2024-01-01" in rendered.text  # the rendered template field
    tail = ui.get("/dags/flaky/tasks/boom/log", params={"run_id": run, "try": "2", "offset": "0"}, headers=PAGE)
    assert tail.status_code == 200 and "about to fail" in tail.text and "log-tail" not in tail.text


def test_models_pages(ui: TestClient) -> None:
    r = ui.get("/models", headers=PAGE)
    assert r.status_code == 200 and "house_prices" in r.text and "champion → v1" in r.text
    m = ui.get("/models/house_prices", headers=PAGE)
    assert m.status_code == 200
    assert 'data-version="1"' in m.text and 'data-version="2"' in m.text
    assert "rmse" in m.text and "0.9" in m.text
    assert 'class="num metric-best">0.9<' in m.text  # lower rmse is better
    assert "first model, checked by hand" in m.text  # alias history
    assert "feedbeef0123" in m.text  # lineage: data hash
    assert "/dags/etl/graph?run_id=" in m.text  # lineage: the run that made it
    assert 'id="profile"' in m.text and "rooms" in m.text


def test_promote_with_reason(ui: TestClient, web_home: WebHome) -> None:
    r = ui.post("/models/house_prices/2/review", data={"csrf_token": ui.csrf, "action": "promote",  # type: ignore[attr-defined]
                                                       "reason": "better rmse"}, headers=PAGE)
    assert r.status_code == 200 and "v2 promoted" in r.text
    assert "better rmse" in r.text
    from headwater.ml.registry_sql import SqlModelRegistry

    reg = SqlModelRegistry(web_home.store, web_home.settings.home / "models")
    assert reg.resolve("house_prices@champion").version == 2
    assert reg.get("house_prices", 2).status_by == "ana"


def test_promote_without_reason_changes_nothing(ui: TestClient, web_home: WebHome) -> None:
    r = ui.post("/models/house_prices/2/review", data={"csrf_token": ui.csrf, "action": "promote", "reason": " "},  # type: ignore[attr-defined]
                headers=PAGE)
    assert r.status_code == 200 and "needs a reason" in r.text
    from headwater.ml.registry_sql import SqlModelRegistry

    reg = SqlModelRegistry(web_home.store, web_home.settings.home / "models")
    assert reg.resolve("house_prices@champion").version == 1


def test_streams_page_without_apps(ui: TestClient) -> None:
    r = ui.get("/streams", headers=PAGE)
    assert r.status_code == 200 and "No stream app has reported" in r.text
    live = ui.get("/streams/live.json")
    assert live.status_code == 200 and live.json()["apps"] == {}


def test_names_are_escaped(ui: TestClient, web_home: WebHome) -> None:
    """A DAG and a task named <script>alert(1)</script> (stored as a hand-made spec) show as text."""
    from headwater.orchestration.spec import DagSpec, TaskSpec

    evil = "<script>alert(1)</script>"
    web_home.store.upsert_dag(DagSpec(dag_id=evil, tasks={evil: TaskSpec(task_id=evil)}, fileloc="/nowhere.py"))
    web_home.run_dag(evil, "2024-01-01")
    escaped = html.escape(evil)
    listing = ui.get("/dags", headers=PAGE).text
    assert escaped in listing and evil not in listing
    pages = [f"/dags/{evil}/grid", f"/dags/{evil}/graph", f"/dags/{evil}/gantt", f"/dags/{evil}/runs",
             f"/dags/{evil}/tasks/{evil}"]
    for path in pages:
        r = ui.get(path, headers=PAGE)
        assert r.status_code == 200, (path, r.text[:300])
        assert evil not in r.text, path
        assert escaped in r.text, path
    # the fixture's xss_dag: description, owner, tag and param payloads
    listing = ui.get("/dags", headers=PAGE).text
    for payload in ("<script>alert('dag')</script>", "<script>alert('owner')</script>", "<img src=x onerror=alert(1)>",
                    "<script>alert('param')</script>"):
        assert payload not in listing


@pytest.mark.parametrize(("path", "data"), [
    ("/dags/etl/trigger", {}),
    ("/dags/etl/pause", {"paused": "true"}),
    ("/dags/flaky/tasks/boom/clear", {"run_id": WebHome.flaky_run, "downstream": "true"}),
    ("/dags/flaky/tasks/boom/mark", {"run_id": WebHome.flaky_run, "state": "success"}),
    ("/models/house_prices/2/review", {"action": "promote", "reason": "x"}),
    ("/logout", {}),
])
def test_forms_without_csrf_token_are_refused(ui: TestClient, web_home: WebHome, path: str,
                                              data: dict[str, str]) -> None:
    before = (web_home.store.list_runs("etl"), web_home.store.get_dag("etl"),
              web_home.store.list_task_instances("flaky"))
    r = ui.post(path, data=data, headers=PAGE, follow_redirects=False)
    assert r.status_code == 403
    r = ui.post(path, data={**data, "csrf_token": "forged"}, headers=PAGE, follow_redirects=False)
    assert r.status_code == 403
    after = (web_home.store.list_runs("etl"), web_home.store.get_dag("etl"),
             web_home.store.list_task_instances("flaky"))
    assert before == after


def test_forms_without_login_are_refused(anon: TestClient, web_home: WebHome) -> None:
    r = anon.post("/dags/etl/trigger", data={"csrf_token": "x"}, headers=PAGE, follow_redirects=False)
    assert r.status_code in (303, 401)
    assert len(web_home.store.list_runs("etl")) == 2


def test_trigger_pause_clear_mark(ui: TestClient, web_home: WebHome) -> None:
    csrf = ui.csrf  # type: ignore[attr-defined]
    r = ui.post("/dags/etl/trigger", data={"csrf_token": csrf, "param.rows": "25", "param.api_password": "***"},
                headers=PAGE)
    assert r.status_code == 200 and "queued run manual__" in r.text
    runs = web_home.store.list_runs("etl")
    assert len(runs) == 3 and runs[0].conf == {"rows": 25}  # the masked secret kept its default
    bad = ui.post("/dags/etl/trigger", data={"csrf_token": csrf, "param.rows": "many"}, headers=PAGE)
    assert "not a JSON value" in bad.text and len(web_home.store.list_runs("etl")) == 3
    wrong_type = ui.post("/dags/etl/trigger", data={"csrf_token": csrf, "param.rows": '"ten"'}, headers=PAGE)
    assert "takes a integer" in wrong_type.text or "integer" in wrong_type.text
    assert len(web_home.store.list_runs("etl")) == 3

    ui.post("/dags/etl/pause", data={"csrf_token": csrf, "paused": "true"}, headers=PAGE)
    record = web_home.store.get_dag("etl")
    assert record is not None and record.is_paused

    run = web_home.flaky_run
    r = ui.post("/dags/flaky/tasks/boom/clear", data={"csrf_token": csrf, "run_id": run, "downstream": "true"},
                headers=PAGE)
    assert r.status_code == 200 and "cleared 2 task instances" in r.text
    states = {ti.task_id: ti.state.value for ti in web_home.store.list_task_instances("flaky", run)}
    assert states == {"ok": "success", "boom": "none", "after": "none"}
    r = ui.post("/dags/flaky/tasks/ok/mark", data={"csrf_token": csrf, "run_id": run, "state": "failed"}, headers=PAGE)
    assert r.status_code == 200 and "ok marked failed" in r.text
    ti = web_home.store.get_task_instance("flaky", run, "ok")
    assert ti is not None and ti.state.value == "failed"


def test_thousand_runs_paginate(ui: TestClient, web_home: WebHome) -> None:
    """1,000 runs of a 100-task DAG: the grid shows one page of runs, the runs table one page of rows."""
    import datetime as dt

    from headwater.orchestration.spec import DagSpec, TaskSpec
    from headwater.orchestration.states import RunState, TaskState
    from headwater.store.base import DagRunRecord, TaskInstanceRecord

    tasks = {f"t{i:03d}": TaskSpec(task_id=f"t{i:03d}", upstream=(f"t{i - 1:03d}",) if i else ()) for i in range(100)}
    web_home.store.upsert_dag(DagSpec(dag_id="big", tasks=tasks, fileloc="/nowhere.py"))
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    for n in range(1000):
        when = start + dt.timedelta(days=n)
        rid = f"scheduled__{when.isoformat()}"
        web_home.store.create_run(
            DagRunRecord("big", rid, when, when, when + dt.timedelta(days=1), "scheduled", RunState.SUCCESS,
                         start_date=when, end_date=when + dt.timedelta(minutes=5)),
            [TaskInstanceRecord("big", rid, t, TaskState.SUCCESS) for t in tasks],
        )
    grid = ui.get("/dags/big/grid", headers=PAGE)
    assert grid.status_code == 200
    assert grid.text.count('<div class="runbar">') == 25
    assert grid.text.count('class="cell s-success"') == 25 * 100
    assert "1000 runs · page 1 of 40" in grid.text
    newest = (start + dt.timedelta(days=999)).isoformat()
    assert f"scheduled__{newest}" in grid.text
    last = ui.get("/dags/big/grid", params={"page": 40}, headers=PAGE)
    assert f"scheduled__{start.isoformat()}" in last.text and "page 40 of 40" in last.text
    # the page goes compressed to a browser that accepts it, and whole to one that does not
    zipped = ui.get("/dags/big/grid", headers={**PAGE, "Accept-Encoding": "gzip"})
    assert zipped.headers.get("content-encoding") == "gzip"
    assert zipped.text.count('class="cell s-success"') == 25 * 100
    assert zipped.num_bytes_downloaded * 5 < len(zipped.content), (zipped.num_bytes_downloaded, len(zipped.content))
    plain = ui.get("/dags/big/grid", headers={**PAGE, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.text.count('class="cell s-success"') == 25 * 100
    runs = ui.get("/dags/big/runs", params={"page": 2}, headers=PAGE)
    assert runs.text.count('class="state s-success"') == 50 and "page 2 of 20" in runs.text
    assert ui.get("/dags", headers=PAGE).status_code == 200
    # no N+1: a page of the 1,000-run, 100-task DAG runs no more queries than that of a 2-run, 3-task one
    big_run, small_run = quote(f"scheduled__{newest}", safe=""), quote(web_home.flaky_run, safe="")
    for view in ("grid", "grid/fragment", "runs", "graph", "gantt"):
        assert queries_of(ui, f"/dags/big/{view}") <= queries_of(ui, f"/dags/etl/{view}"), view
    assert queries_of(ui, f"/dags/big/tasks/t050?run_id={big_run}") <= queries_of(  # both never tried
        ui, f"/dags/flaky/tasks/after?run_id={small_run}")


def test_many_dags_paginate_in_a_constant_number_of_queries(ui: TestClient, web_home: WebHome) -> None:
    """120 more DAGs, each with runs: the list shows 50 a page with a pager, and a full page runs
    no more queries than a short one (no query per DAG)."""
    import datetime as dt

    from headwater.orchestration.spec import DagSpec, TaskSpec
    from headwater.orchestration.states import RunState
    from headwater.store.base import DagRunRecord

    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for n in range(120):
        dag_id = f"many_{n:03d}"
        web_home.store.upsert_dag(DagSpec(dag_id=dag_id, tasks={"t": TaskSpec(task_id="t")}, fileloc="/nowhere.py",
                                          schedule="0 0 * * *", start_date=start))
        for day in range(3):
            when = start + dt.timedelta(days=day)
            web_home.store.create_run(DagRunRecord(dag_id, f"scheduled__{day}", when, when, when + dt.timedelta(days=1),
                                                   "scheduled", RunState.SUCCESS), [])
    total = 123  # and etl, flaky, xss_dag of the home
    first = ui.get("/dags", headers=PAGE)
    assert first.text.count("data-dag-id=") == 50
    assert f"{total} DAGs · page 1 of 3" in first.text and 'href="/dags?page=2"' in first.text
    last = ui.get("/dags", params={"page": 3}, headers=PAGE)
    assert last.text.count("data-dag-id=") == total - 100 and "page 3 of 3" in last.text
    beyond = ui.get("/dags", params={"page": 99}, headers=PAGE)  # past the end: the last page
    assert beyond.text.count("data-dag-id=") == total - 100
    # each DAG's own runs and next run, though read for the whole page at once
    row = first.text[first.text.index('data-dag-id="many_000"'):]
    row = row[:row.index("</tr>")]
    assert row.count('class="dot s-success"') == 3
    searched = ui.get("/dags", params={"q": "many_11", "page": 1}, headers=PAGE)
    assert searched.text.count("data-dag-id=") == 10 and "page 1 of" not in searched.text
    assert queries_of(ui, "/dags") <= queries_of(ui, "/dags?page=3")
    assert queries_of(ui, "/dags/fragment") <= queries_of(ui, "/dags/fragment?page=3")
    api = ui.get("/api/v1/dags", params={"limit": 10, "offset": 115}).json()
    # by id: etl, flaky, many_000 ... many_119, xss_dag
    assert api["total"] == total
    assert [d["dag_id"] for d in api["dags"]] == [f"many_{n}" for n in range(113, 120)] + ["xss_dag"]
    assert [len(d["last_runs"]) for d in api["dags"]] == [3] * 7 + [0]
    assert api["dags"][0]["next_run"] is not None


def queries_of(client: TestClient, path: str) -> int:
    """How many SQL statements the app runs to answer GET ``path``."""
    from sqlalchemy import event

    engine = client.app.state.web.store.engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(path, headers=PAGE).status_code == 200, path
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_log_of_a_running_try_streams_by_offset(ui: TestClient, web_home: WebHome) -> None:
    """While a try runs, the page ends with a poller at the log's end; each poll returns the new
    text and the next poller; once the try has ended the answer has no poller (polling stops)."""
    import datetime as dt

    from headwater.executor.base import TaskKey
    from headwater.orchestration.layout import log_path
    from headwater.orchestration.states import TaskState
    from headwater.store.base import TryRecord, UnitOfWork

    store = web_home.store
    run_id = web_home.run_dag("etl", "2024-02-01")
    ti = store.get_task_instance("etl", run_id, "load")
    assert ti is not None
    path = log_path(web_home.settings.logs_folder, TaskKey("etl", run_id, "load", 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("line one <b>\n")
    now = dt.datetime.now(dt.UTC)
    ti.state, ti.try_number, ti.max_tries = TaskState.RUNNING, 2, 2
    attempt = TryRecord("etl", run_id, "load", 2, TaskState.RUNNING, start_date=now, log_path=str(path),
                        operator="BashOperator")
    store.commit(UnitOfWork(task_instances=[ti], tries=[attempt]))

    page = ui.get("/dags/etl/tasks/load", params={"run_id": run_id}, headers=PAGE)
    assert "line one &lt;b&gt;" in page.text and 'id="log-tail"' in page.text and 'class="live"' in page.text
    offset = int(re.search(r'offset=(\d+)"', page.text).group(1))  # type: ignore[union-attr]
    assert offset == len(b"line one <b>\n")
    base = {"run_id": run_id, "try": "2"}
    nothing_new = ui.get("/dags/etl/tasks/load/log", params={**base, "offset": offset}, headers=PAGE)
    assert nothing_new.text.startswith('<span id="log-tail"') and f"offset={offset}" in nothing_new.text

    with path.open("a") as fh:
        fh.write("line two\n")
    more = ui.get("/dags/etl/tasks/load/log", params={**base, "offset": offset}, headers=PAGE)
    assert more.text.startswith("line two\n") and "line one" not in more.text
    assert f"offset={offset + len('line two') + 1}" in more.text

    ti.state = TaskState.SUCCESS
    attempt.state, attempt.end_date = TaskState.SUCCESS, now
    store.commit(UnitOfWork(task_instances=[ti], tries=[attempt]))
    done = ui.get("/dags/etl/tasks/load/log", params={**base, "offset": offset}, headers=PAGE)
    assert done.text.startswith("line two\n") and "log-tail" not in done.text
    # the last answer also updates the state badge at the top of the page (htmx out-of-band swap)
    assert '<span id="ti-state" hx-swap-oob="true"><span class="state s-success">success</span></span>' in done.text


def test_log_outside_the_logs_folder_is_not_shown(ui: TestClient, web_home: WebHome, tmp_path: Path) -> None:
    """A try whose recorded log path points outside the logs folder: the page says so, never reads it."""
    from headwater.orchestration.states import TaskState
    from headwater.store.base import TryRecord, UnitOfWork

    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    run_id = web_home.etl_runs[0]
    evil = TryRecord("etl", run_id, "extract", 1, TaskState.SUCCESS, log_path=str(secret), operator="x")
    web_home.store.commit(UnitOfWork(tries=[evil]))
    for path in (str(secret), f"{web_home.settings.logs_folder}/../../{secret.name}"):
        web_home.store.commit(UnitOfWork(tries=[TryRecord(**{**vars_of(evil), "log_path": path})]))
        r = ui.get("/dags/etl/tasks/extract", params={"run_id": run_id, "try": "1"}, headers=PAGE)
        assert r.status_code == 200 and "top secret" not in r.text and "outside the logs folder" in r.text


def vars_of(record: object) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(record)  # type: ignore[call-overload]


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_redirects_only_within_the_site(make_client: Callable[..., TestClient], target: str) -> None:
    client = make_client()
    r = client.post("/login", data={"token": TOKEN, "name": "ana", "next": target}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dags"
    ok = make_client().post("/login", data={"token": TOKEN, "next": "/models"}, follow_redirects=False)
    assert ok.headers["location"] == "/models"


def test_logout_ends_the_session(ui: TestClient) -> None:
    r = ui.post("/logout", data={"csrf_token": ui.csrf}, headers=PAGE, follow_redirects=False)  # type: ignore[attr-defined]
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert ui.get("/dags", headers=PAGE, follow_redirects=False).status_code == 303


PARAMS_DAG = '''
from datetime import datetime

from headwater import DAG, EmptyOperator, Param

with DAG("retrain", schedule=None, start_date=datetime(2024, 1, 1), params={
        "region": Param("eu", enum=["all", "eu", "us"], description="where to train"),
        "days": Param(7, type="integer", minimum=1, maximum=90),
        "note": Param(None, type=["null", "string"]),
        "key": Param("s3cr3t-value", type="string", secret=True)}) as dag:
    EmptyOperator(task_id="t")
'''


def test_trigger_form_follows_the_params_schema(ui: TestClient, web_home: WebHome) -> None:
    web_home.write_dag("retrain.py", PARAMS_DAG)
    web_home.refresh()
    page = ui.get("/dags/retrain/grid", headers=PAGE).text
    form = page[page.index('class="trigger-form"'):]
    assert '<select name="param.region"><option >all</option><option selected>eu</option>' in form
    assert "where to train" in form and "(integer; 1 to 90)" in form
    assert 'name="param.key" value="***"' in form and "s3cr3t-value" not in page
    csrf = ui.csrf  # type: ignore[attr-defined]
    base = {"csrf_token": csrf, "param.region": "eu", "param.days": "7", "param.note": "null", "param.key": "***"}
    too_many = ui.post("/dags/retrain/trigger", data={**base, "param.days": "365"}, headers=PAGE)
    assert "days" in too_many.text and "90" in too_many.text and not web_home.store.list_runs("retrain")
    ok = ui.post("/dags/retrain/trigger", data={**base, "param.region": "us", "param.note": "first try"},
                 headers=PAGE)
    assert "queued run" in ok.text
    (run,) = web_home.store.list_runs("retrain")
    assert run.conf.get("region") == "us" and run.conf.get("note") == "first try"
    assert "s3cr3t-value" not in str(run.conf)


def test_dag_list_filters_and_runs_by_state(ui: TestClient) -> None:
    by_tag = ui.get("/dags", params={"tag": "etl"}, headers=PAGE).text
    assert 'data-dag-id="etl"' in by_tag and 'data-dag-id="flaky"' not in by_tag
    by_name = ui.get("/dags", params={"q": "fla"}, headers=PAGE).text
    assert 'data-dag-id="flaky"' in by_name and 'data-dag-id="etl"' not in by_name
    assert 'hx-get="/dags/fragment?q=fla&tag=&page=1"' in by_name  # the live refresh keeps the filter and page
    failed = ui.get("/dags/flaky/runs", params={"state": "failed"}, headers=PAGE).text
    assert WebHome.flaky_run in failed
    assert "No success runs." in ui.get("/dags/flaky/runs", params={"state": "success"}, headers=PAGE).text


def test_read_only_open_shows_pages_but_refuses_writes(make_client: Callable[..., TestClient],
                                                       web_home: WebHome) -> None:
    anon = make_client(read_only_open=True)
    for path in ("/dags", "/dags/etl/grid", "/models/house_prices", "/streams"):
        r = anon.get(path, headers=PAGE)
        assert r.status_code == 200 and "Log in" in r.text, path
    r = anon.post("/dags/etl/trigger", data={}, headers=PAGE, follow_redirects=False)
    assert r.status_code in (303, 401) and len(web_home.store.list_runs("etl")) == 2
