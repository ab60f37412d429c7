"""The REST API under /api/v1, through Starlette's TestClient, over a real populated home."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.conftest import WebHome


def test_health_answers_and_reads_the_database(api: TestClient, web_home: WebHome) -> None:
    assert api.get("/api/v1/health").json() == {"status": "ok", "database": "ok"}
    # The home the fixture built is what the app serves.
    assert {d.dag_id for d in web_home.store.list_dags()} == {"etl", "flaky", "xss_dag"}
