"""Authentication: the API token, the session login with CSRF, read access, and that EVERY route that
changes something is protected (the list comes from the app itself, so a new route cannot slip by)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from headwater.web.auth import require_read, require_write
from tests.web.conftest import TOKEN, WebHome

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
RUN = quote(WebHome.flaky_run, safe="")
# Writes reachable without credentials, each for a reason:
UNGUARDED_WRITES = {
    ("POST", "/api/v1/session"),  # the login itself: it takes the token in its body (a wrong one is a 401)
    ("POST", "/login"),  # the UI's login form (the same check, through headwater.web.auth.login)
    ("POST", "/logout"),  # the UI's logout checks the session's CSRF token itself (tests/web/test_ui_pages.py)
}
# Every mutating API route with a request that succeeds given the token. A new route must be added here.
WRITES: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("DELETE", "/api/v1/session"): ("/api/v1/session", None),
    ("POST", "/api/v1/dags/{dag_id}/pause"): ("/api/v1/dags/etl/pause", None),
    ("POST", "/api/v1/dags/{dag_id}/unpause"): ("/api/v1/dags/etl/unpause", None),
    ("POST", "/api/v1/dags/{dag_id}/runs"): ("/api/v1/dags/etl/runs", {"conf": {"rows": 1}}),
    ("POST", "/api/v1/dags/{dag_id}/runs/{run_id}/clear"): (f"/api/v1/dags/flaky/runs/{RUN}/clear",
                                                            {"task_ids": ["boom"]}),
    ("POST", "/api/v1/dags/{dag_id}/runs/{run_id}/mark"): (f"/api/v1/dags/flaky/runs/{RUN}/mark",
                                                           {"task_ids": ["boom"], "state": "success"}),
    ("POST", "/api/v1/models/{name}/versions/{version}/{action}"): ("/api/v1/models/house_prices/versions/2/promote",
                                                                    {"reason": "better"}),
}
PARAMS = {"dag_id": "etl", "run_id": RUN, "task_id": "extract", "name": "house_prices", "version": "1",
          "group": "scorer", "app": "scorer", "action": "approve"}


def routes(app: FastAPI) -> Iterator[tuple[str, str, Any]]:
    """(method, path, route) of every route, included routers flattened."""
    try:  # FastAPI >= 0.16x keeps included routers lazily; this flattens them with their dependencies
        from fastapi.routing import iter_route_contexts

        found: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:
        found = list(app.routes)
    for route in found:
        for method in sorted(getattr(route, "methods", None) or ()):
            yield method, route.path, route


def _calls(route: Any) -> set[Any]:
    out: set[Any] = set()
    stack = [getattr(route, "dependant", None)]
    while stack:
        dep = stack.pop()
        if dep is None:
            continue
        out.add(dep.call)
        stack.extend(dep.dependencies)
    return out


def _fill(path: str) -> str:
    for name, value in PARAMS.items():
        path = path.replace(f"{{{name}}}", value).replace(f"{{{name}:path}}", value)
    return path


@pytest.fixture
def app(web_home: WebHome) -> FastAPI:
    from headwater.web.app import create_app

    return create_app(web_home.settings, token=TOKEN)


def test_every_write_route_of_the_app_requires_the_write_dependency(app: FastAPI) -> None:
    writes = [(m, p, r) for m, p, r in routes(app) if m not in SAFE_METHODS]
    assert len(writes) >= len(WRITES)
    unguarded = {(m, p) for m, p, r in writes if require_write not in _calls(r)}
    assert unguarded <= UNGUARDED_WRITES, f"write routes without require_write: {unguarded - UNGUARDED_WRITES}"
    api_writes = {(m, p) for m, p, _ in writes if p.startswith("/api/")} - UNGUARDED_WRITES
    assert api_writes == set(WRITES), "a write route of the API has no entry in WRITES (add one)"


def test_every_read_route_of_the_api_requires_the_read_dependency(app: FastAPI) -> None:
    reads = [(p, r) for m, p, r in routes(app) if m == "GET" and p.startswith("/api/") and "openapi" not in p]
    assert len(reads) > 15
    open_reads = {p for p, r in reads if require_read not in _calls(r)}
    assert open_reads == {"/api/v1/health"}


@pytest.mark.parametrize(("key", "request_"), list(WRITES.items()), ids=[f"{m} {p}" for m, p in WRITES])
def test_writes_need_the_token(make_client: Callable[..., TestClient], web_home: WebHome,
                               key: tuple[str, str], request_: tuple[str, dict[str, Any] | None]) -> None:
    method, _ = key
    path, body = request_
    before = _snapshot(web_home)
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": "Bearer "}, {"Authorization": TOKEN}):
        client = make_client(headers=headers)
        response = client.request(method, path, json=body)
        assert response.status_code == 401, (headers, response.text)
        error = response.json()["error"]
        assert error["code"] == "unauthorized" and "Bearer" in error["hint"]
        assert response.headers["www-authenticate"] == "Bearer"
    # Reads open to anyone do not open writes.
    opened = make_client(read_only_open=True).request(method, path, json=body)
    assert opened.status_code == 401
    assert _snapshot(web_home) == before, "a refused request changed something"
    ok = make_client(headers={"Authorization": f"Bearer {TOKEN}"}).request(method, path, json=body)
    assert ok.status_code in (200, 201, 204), ok.text


def _snapshot(home: WebHome) -> object:
    from headwater.ml.registry_sql import SqlModelRegistry

    store = home.store
    reg = SqlModelRegistry(store, home.settings.home / "models")
    return ([(d.dag_id, d.is_paused) for d in store.list_dags()],
            [(r.run_id, r.state) for r in store.list_runs(limit=None)],
            [(t.task_id, t.state, t.try_number) for t in store.list_task_instances()],
            [(v.version, v.status) for v in reg.list_versions("house_prices")], reg.aliases("house_prices"))


def test_reads_need_a_token_or_a_session_unless_opened(make_client: Callable[..., TestClient],
                                                       app: FastAPI) -> None:
    reads = sorted({_fill(p) for m, p, _ in routes(app)
                    if m == "GET" and p.startswith("/api/v1/") and p not in ("/api/v1/health", "/api/v1/openapi.json")})
    closed = make_client()
    opened = make_client(read_only_open=True)
    bad = make_client(read_only_open=True, headers={"Authorization": "Bearer nope"})
    for path in reads:
        refused = closed.get(path)
        assert refused.status_code == 401, path
        assert "log in" in refused.json()["error"]["message"], path
        assert opened.get(path).status_code != 401, path
        assert bad.get(path).status_code == 401, path  # a wrong token is wrong even where reads are open
    assert closed.get("/api/v1/health").status_code == 200


def test_token_made_by_db_init_is_checked_against_its_hash(web_home: WebHome) -> None:
    from headwater.web.app import create_app
    from headwater.web.auth import make_token, token_file

    token = make_token(web_home.settings)
    assert token is not None and make_token(web_home.settings) is None  # made once, never replaced
    path = token_file(web_home.settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert token not in path.read_text()  # only the hash is kept
    client = TestClient(create_app(web_home.settings), base_url="http://127.0.0.1")
    assert client.post("/api/v1/dags/etl/pause", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.post("/api/v1/dags/etl/pause", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    secret = web_home.settings.home / "web_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


def test_without_any_token_nothing_can_be_written_and_the_hint_says_how_to_make_one(web_home: WebHome) -> None:
    from headwater.web.app import create_app

    client = TestClient(create_app(web_home.settings), base_url="http://127.0.0.1")
    error = client.post("/api/v1/dags/etl/pause", headers={"Authorization": "Bearer anything"}).json()["error"]
    assert "HEADWATER_API_TOKEN" in error["hint"] and "headwater db init" in error["hint"]
    assert client.post("/api/v1/session", json={"token": "anything"}).status_code == 401


# -- sessions and CSRF --------------------------------------------------------------------


def _login(client: TestClient, user: str | None = "ana") -> str:
    response = client.post("/api/v1/session", json={"token": TOKEN, "user": user})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


def test_login_sets_a_signed_http_only_cookie_and_whoami_tells_the_user(anon: TestClient) -> None:
    assert anon.post("/api/v1/session", json={"token": "wrong"}).status_code == 401
    assert "headwater_session" not in anon.cookies
    response = anon.post("/api/v1/session", json={"token": TOKEN, "user": "ana"})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    me = anon.get("/api/v1/session").json()
    assert (me["user"], me["via"]) == ("ana", "session") and len(me["csrf_token"]) > 20
    assert anon.get("/api/v1/dags").status_code == 200


def test_session_writes_need_the_csrf_token(anon: TestClient, web_home: WebHome) -> None:
    csrf = _login(anon)
    refused = anon.post("/api/v1/dags/etl/pause")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert anon.post("/api/v1/dags/etl/pause", headers={"X-CSRF-Token": "stale"}).status_code == 403
    assert not web_home.store.get_dag("etl").is_paused  # type: ignore[union-attr]
    assert anon.post("/api/v1/dags/etl/pause", headers={"X-CSRF-Token": csrf}).status_code == 200
    promoted = anon.post("/api/v1/models/house_prices/versions/2/promote", json={"reason": "ok", "who": "eve"},
                         headers={"X-CSRF-Token": csrf}).json()
    assert promoted["status_by"] == "ana"  # a session acts as its user, whatever the body says


def test_csrf_token_in_a_form_field_is_accepted(web_home: WebHome) -> None:
    from headwater.web.app import create_app

    app = create_app(web_home.settings, token=TOKEN, with_ui=False)

    async def echo(request: Request) -> dict[str, str]:
        form = await request.form()  # the dependency read it first: the form is still there
        return {"name": str(form.get("name"))}

    app.add_api_route("/form-test", echo, methods=["POST"], dependencies=[Depends(require_write)])
    client = TestClient(app, base_url="http://127.0.0.1")
    csrf = _login(client)
    assert client.post("/form-test", data={"name": "x"}).status_code == 403
    assert client.post("/form-test", data={"name": "x", "csrf_token": "forged"}).status_code == 403
    ok = client.post("/form-test", data={"name": "x", "csrf_token": csrf})
    assert ok.status_code == 200 and ok.json() == {"name": "x"}


def test_logout_ends_the_session_and_a_forged_cookie_is_nobody(anon: TestClient) -> None:
    csrf = _login(anon)
    assert anon.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert anon.get("/api/v1/dags").status_code == 401
    anon.cookies.set("headwater_session", "eyJ1c2VyIjogImFuYSJ9.forged.signature")
    assert anon.get("/api/v1/dags").status_code == 401


def test_a_new_login_gets_a_new_csrf_token(anon: TestClient) -> None:
    first = _login(anon)
    second = _login(anon, user=None)
    assert first != second
    assert anon.get("/api/v1/session").json()["user"] == "admin"
    assert anon.post("/api/v1/dags/etl/pause", headers={"X-CSRF-Token": first}).status_code == 403


def test_a_wrong_bearer_token_is_refused_even_with_a_good_session(anon: TestClient) -> None:
    _login(anon)
    assert anon.get("/api/v1/dags", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_browser_asking_for_a_page_is_sent_to_the_login(web_home: WebHome) -> None:
    from headwater.web.app import create_app

    app = create_app(web_home.settings, token=TOKEN, with_ui=False)
    app.add_api_route("/some/page", lambda: {"x": 1}, dependencies=[Depends(require_read)])
    client = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
    page = client.get("/some/page?run=1", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/some/page%3Frun%3D1"
    assert client.get("/some/page").status_code == 401  # an API client gets the JSON error


def test_a_cross_site_form_cannot_log_a_browser_in(anon: TestClient) -> None:
    # A page of another site can post a form (text/plain or urlencoded), never JSON without asking first.
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = anon.post("/api/v1/session", content=f'{{"token": "{TOKEN}"}}',
                             headers={"Content-Type": content_type})
        assert response.status_code == 422, content_type
    assert anon.get("/api/v1/dags").status_code == 401
