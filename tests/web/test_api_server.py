"""``headwater web`` as users start it: a real server in a subprocess, on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.web.conftest import TOKEN, WebHome

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(web_home: WebHome) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    import httpx2

    port = _free_port()
    env = dict(os.environ, HEADWATER_HOME=str(web_home.settings.home), HEADWATER_API_TOKEN=TOKEN, COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", "headwater", "web", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for the server to answer (not a timing assertion: a start-up wait)
            if proc.poll() is not None:
                raise AssertionError(f"headwater web exited {proc.returncode}: {proc.communicate()}")
            try:
                if httpx2.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("headwater web did not answer within 60 s")
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_headwater_web_serves_the_api_and_its_docs(server: tuple[str, subprocess.Popen[str]]) -> None:
    import httpx2

    url, proc = server
    assert httpx2.get(f"{url}/api/v1/health").json() == {"status": "ok", "database": "ok"}
    docs = httpx2.get(f"{url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower() and "/api/v1/openapi.json" in docs.text
    assert httpx2.get(f"{url}/api/v1/openapi.json").json()["info"]["title"] == "headwater"
    metrics = httpx2.get(f"{url}/metrics")  # mounted from headwater.monitoring
    assert metrics.status_code == 200 and "# TYPE process_cpu_seconds_total counter" in metrics.text
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx2.get(f"{url}/api/v1/dags").status_code == 401
    dags = httpx2.get(f"{url}/api/v1/dags", headers=auth).json()
    assert [d["dag_id"] for d in dags["dags"]] == ["etl", "flaky", "xss_dag"]
    assert httpx2.post(f"{url}/api/v1/dags/etl/pause").status_code == 401
    assert httpx2.post(f"{url}/api/v1/dags/etl/pause", headers=auth).json()["is_paused"] is True
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert f"headwater web on http://{url.removeprefix('http://')}" in out  # bound to 127.0.0.1 by default
    assert proc.returncode == 0, err
