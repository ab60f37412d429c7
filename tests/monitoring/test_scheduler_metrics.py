"""``headwater scheduler --metrics-port``: a real scheduler, /metrics scraped over HTTP, compared with the store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

import psutil
import pytest

from headwater.orchestration.states import RunState
from tests.monitoring.promtools import free_port, scrape, total
from tests.orchestration.conftest import Home

pytestmark = pytest.mark.slow

DAG = """
    import datetime as dt
    from pathlib import Path
    from headwater import DAG, PythonOperator

    MARK = Path({mark!r})

    def flaky():
        # Fails on its first try, succeeds on the second.
        if not MARK.exists():
            MARK.write_text("tried")
            raise RuntimeError("first try fails")

    def fine():
        return 1

    with DAG("measured", schedule="@once", start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
             default_args={{"retries": 1, "retry_delay": dt.timedelta(seconds=0)}}):
        a = PythonOperator(task_id="flaky", python_callable=flaky)
        b = PythonOperator(task_id="fine", python_callable=fine)
        c = PythonOperator(task_id="after", python_callable=fine)
        a >> c
        b >> c
"""

BROKEN = "import nowhere_to_be_found\n"


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_task_try_counters_equal_the_tries_in_the_store(home: Home) -> None:
    home.write_dag("measured.py", DAG.format(mark=str(home.root / "mark")))
    home.write_dag("broken.py", BROKEN)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "headwater", "scheduler", "-p", "2", "--metrics-port", str(port)],
        env=home.env(), cwd=home.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def finished() -> bool:
            runs = home.store.list_runs("measured")
            return bool(runs) and runs[0].state.finished

        _wait(finished, 120, "the run of 'measured' to finish")
        # The try of the last task is committed before the counter moves; allow the event to be applied.
        (run,) = home.store.list_runs("measured")
        tries = [t for task in ("flaky", "fine", "after") for t in home.store.list_tries("measured", run.run_id, task)]
        by_state = Counter(t.state.value for t in tries)

        def counted() -> bool:
            return total(scrape(f"http://127.0.0.1:{port}/metrics"), "headwater_task_tries_total",
                         dag_id="measured") >= len(tries)

        _wait(counted, 30, "the tries to be counted")
        samples = scrape(f"http://127.0.0.1:{port}/metrics")

        # The listening socket is on the loopback interface only.
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert (("127.0.0.1", port)) in [(a.ip, a.port) for a in listening]
        assert all(a.ip == "127.0.0.1" for a in listening), listening
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)

    assert run.state is RunState.SUCCESS, out
    assert by_state == {"success": 3, "failed": 1}, by_state
    assert total(samples, "headwater_task_tries_total", dag_id="measured") == len(tries) == 4
    assert total(samples, "headwater_task_tries_total", dag_id="measured", task_id="flaky", state="failed") == 1
    assert total(samples, "headwater_task_tries_total", dag_id="measured", task_id="flaky", state="success") == 1
    assert total(samples, "headwater_task_tries_total", dag_id="measured", state="success") == by_state["success"]
    assert total(samples, "headwater_task_try_duration_seconds_count", dag_id="measured") == len(tries)
    durations = sum(t.duration or 0.0 for t in tries)
    assert total(samples, "headwater_task_try_duration_seconds_sum", dag_id="measured") == pytest.approx(
        durations, abs=0.5 * len(tries))
    # Two DAG files parsed once each at start, one failed to import.
    assert total(samples, "headwater_dag_parse_duration_seconds_count") == 2
    assert total(samples, "headwater_dag_parse_errors_total", kind="import") == 1
    assert total(samples, "headwater_scheduler_loop_duration_seconds_count") >= 1
    assert ("headwater_scheduler_queued_tasks", frozenset()) in samples
    assert ("headwater_scheduler_running_tasks", frozenset()) in samples
    assert f"metrics on http://127.0.0.1:{port}/metrics" in out


def test_a_bad_metrics_port_variable_is_refused_with_a_hint(home: Home) -> None:
    proc = home.cli("scheduler", "--until-idle", env={"HEADWATER_METRICS_PORT": "nine"})
    assert proc.returncode != 0
    assert "HEADWATER_METRICS_PORT must be a port number, got 'nine'" in proc.stdout + proc.stderr
