"""Every dashboard query, run by a real Prometheus server that scrapes real /metrics: each returns series."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.monitoring.metrics import SchedulerMetrics, StreamExporter, new_registry
from headwater.monitoring.prometheus import InstancesCollector, serve
from headwater.monitoring.status import status_path, write_status
from headwater.settings import Settings
from tests.monitoring.promtools import free_port
from tests.monitoring.test_grafana_dashboard import _dashboard, _queries, promql

pytestmark = pytest.mark.slow


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    """A Prometheus on 127.0.0.1 scraping, every second, a registry with every headwater metric."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus server is not installed (apt-get install prometheus)")
    registry = new_registry()
    settings = Settings.from_env({"HEADWATER_HOME": str(tmp_path / "home")})
    write_status(status_path(settings, "scorer", "box-1"), {"format": 1, "app": "scorer", "state": "stopped"})
    registry.register(InstancesCollector(settings))
    sched = SchedulerMetrics(registry)
    stream = StreamExporter(registry, "scorer", quality=lambda: ({("range", "sqft"): 3}, {("psi", "sqft"): 1}))
    target = serve(0, registry)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "headwater", "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}]}],
    }))
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            yield f"http://127.0.0.1:{port}", sched, stream
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            target.close()


def _work(sched: SchedulerMetrics, stream: StreamExporter, step: int) -> None:
    """A little of everything a scheduler and a stream app record."""
    sched.try_finished("etl", "load", "success", 1.5 + step)
    sched.try_finished("etl", "load", "failed", 0.5)
    sched.step_done(0.01, queued=step, running=1)

    class Parse:
        parsed = [type("R", (), {"duration": 0.2, "errors": [type("E", (), {"kind": "syntax"})()]})()]

    sched.parsed(Parse())
    stream.batch({"houses": 100}, {"priced": 95}, {"houses": 5}, 0.02)
    stream.set_lag({("houses", 0): 10 * step, ("houses", 1): 0})
    stream.set_models({"predict": ("house_prices@champion", "house_prices:3")})
    stream.predicted("predict", "house_prices:3", [150_000.0, 400_000.0, 2_000_000.0])


def test_every_dashboard_query_returns_series_from_a_real_prometheus(
    prometheus: tuple[str, SchedulerMetrics, StreamExporter],
) -> None:
    url, sched, stream = prometheus
    deadline = time.monotonic() + 60
    scrapes = 0
    step = 0
    while scrapes < 4:  # rate() needs two samples in its window; give it a few
        assert time.monotonic() < deadline, "Prometheus did not scrape the target in time"
        step += 1
        _work(sched, stream, step)
        time.sleep(0.5)
        try:
            got = _get(f"{url}/api/v1/query?query=" + urllib.parse.quote("count_over_time(up[1m])"))
        except OSError:
            continue  # not listening yet
        result = got["data"]["result"]
        scrapes = int(float(result[0]["value"][1])) if result else 0
    empty = []
    for title, expr in _queries(_dashboard()):
        if title.startswith("$"):  # label_values() of a variable: Grafana's, not PromQL
            continue
        got = _get(f"{url}/api/v1/query?query=" + urllib.parse.quote(promql(expr)))
        assert got["status"] == "success", (title, expr, got)
        if not got["data"]["result"]:
            empty.append((title, expr))
    assert empty == []
