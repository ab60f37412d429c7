"""``mount_metrics``: the web server's /metrics (process metrics and stream-app instances by state)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from headwater.monitoring import mount_metrics
from headwater.monitoring.status import status_path, write_status
from headwater.settings import Settings


def test_metrics_route_shows_instances_by_state_from_the_status_files(tmp_path: Path) -> None:
    settings = Settings.from_env({"HEADWATER_HOME": str(tmp_path / "home")})
    now = "2999-01-01T00:00:00+00:00"  # a heartbeat in the future is never stale
    base = {"format": 1, "pid": os.getpid(), "hostname": os.uname().nodename, "heartbeat": now}
    write_status(status_path(settings, "scorer", "a-1"), {**base, "app": "scorer", "state": "running"})
    write_status(status_path(settings, "scorer", "a-2"), {**base, "app": "scorer", "state": "running"})
    write_status(status_path(settings, "scorer", "a-3"), {**base, "app": "scorer", "state": "failed"})
    write_status(status_path(settings, "cleaner", "a-4"), {**base, "app": "cleaner", "state": "running",
                                                           "heartbeat": "2000-01-01T00:00:00+00:00"})
    app = FastAPI()
    mount_metrics(app, settings)

    with TestClient(app) as client:
        response = client.get("/metrics", follow_redirects=False)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(response.text) for s in family.samples}
        instances = {tuple(v for _, v in labels): value for (name, labels), value in samples.items()
                     if name == "headwater_stream_instances"}
        assert instances == {("cleaner", "stopped"): 1.0, ("scorer", "failed"): 1.0, ("scorer", "running"): 2.0}
        assert any(name == "process_cpu_seconds_total" for name, _ in samples)
        assert "/metrics" not in client.get("/openapi.json").text
    # A scrape only reads: every file is still there.
    assert len(list((settings.home / "stream" / "apps").rglob("*.json"))) == 4
