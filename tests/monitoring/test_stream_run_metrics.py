"""``headwater stream run --instances 2 --metrics-port P``: real processes on the embedded log, /metrics over
HTTP on P and P+1, status files read back, a kill -9 seen by the reader."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from headwater.monitoring.status import AppStatus, read_app_statuses
from headwater.settings import Settings
from tests.monitoring.promtools import free_port, scrape, total
from tests.stream.clitools import StreamHome

pytestmark = pytest.mark.slow

APP = textwrap.dedent(
    """
    from headwater.stream.app import StreamApp

    def check(row):
        if row["id"] % 17 == 5:
            raise ValueError(f"id {row['id']} is unlucky")
        return {**row, "double": row["id"] * 2}

    app = StreamApp("doubler", max_batch_records=40, max_batch_latency=0.01)
    app.stream("numbers").map(check).to("doubled")
    """
)
N = 600


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _feed(hw: StreamHome) -> int:
    """N records on 4 partitions, some of them not JSON; returns how many will be dead-lettered."""
    broker = hw.broker()
    broker.create_topic("numbers", 4)
    broker.create_topic("doubled", 1)
    values = [b"{broken" if i % 50 == 9 else b'{"id": %d}' % i for i in range(N)]
    producer = broker.producer()
    producer.produce_batch("numbers", values, [b"%d" % i for i in range(N)])
    producer.flush()
    producer.close()
    broker.close()
    return sum(1 for i in range(N) if i % 50 == 9 or i % 17 == 5)


def test_each_instance_serves_its_counts_and_the_reader_sees_a_killed_one(tmp_path: Path) -> None:
    (tmp_path / "doubler.py").write_text(APP)
    hw = StreamHome(tmp_path)
    dead = _feed(hw)
    settings = Settings.from_env({"HEADWATER_HOME": str(hw.home)})
    port = free_port()
    while port + 1 > 65535 or not _free(port + 1):
        port = free_port()
    proc = hw.popen("stream", "run", "doubler.py:app", "--instances", "2", "--metrics-port", str(port))
    try:
        def statuses() -> list[AppStatus]:
            return read_app_statuses(settings, app="doubler", remove_dead=False)

        def all_read() -> bool:
            got = statuses()
            return (len(got) == 2 and sum(s.data["counters"]["records_in"] for s in got) == N
                    and sum(len(s.data["partitions"]) for s in got) == 4)

        _wait(all_read, 120, f"both instances to report {N} records read")
        # Lag is measured every 5 s: wait for a measurement after the last batch.
        _wait(lambda: all(s.data["lag"]["total"] == 0 for s in statuses()), 30, "the lag to be measured at 0")
        instances = {s.data["instance"]: s for s in statuses()}
        assert set(instances) == {1, 2}
        for number, status in instances.items():
            assert status.state == "running" and status.data["metrics_port"] == port + number - 1
            assert psutil.pid_exists(status.pid or -1)
            counters = status.data["counters"]
            samples = scrape(f"http://127.0.0.1:{port + number - 1}/metrics")
            # Each instance's /metrics are its own counts (the snapshot is the app's StreamMetrics).
            assert total(samples, "headwater_stream_records_in_total", app="doubler") == counters["records_in"]
            assert total(samples, "headwater_stream_records_out_total", topic="doubled") == counters["records_out"]
            assert total(samples, "headwater_stream_records_dead_lettered_total", topic="numbers") == \
                counters["records_dead_lettered"]
            assert total(samples, "headwater_stream_batch_duration_seconds_count") == counters["batches"]
            # Only the loopback interface listens.
            listening = [c.laddr for c in psutil.Process(status.pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port + number - 1)]
        assert sum(s.data["counters"]["records_dead_lettered"] for s in instances.values()) == dead
        assert sum(s.data["counters"]["records_out"] for s in instances.values()) == N - dead
        partitions = sorted((p["topic"], p["partition"]) for s in instances.values() for p in s.data["partitions"])
        assert partitions == [("numbers", p) for p in range(4)]

        shown = hw.cli("stream", "status", "doubler", check=True).stdout
        rows = [line.split()[:2] for line in shown.splitlines() if line.startswith("doubler#") and "pid" not in line]
        assert sorted(rows) == [["doubler#1", "running"], ["doubler#2", "running"]], shown
        assert "last dead letter at step" in shown and "unlucky" in shown + hw.cli(
            "stream", "status", "--json", check=True).stdout

        # kill -9 instance 1: its file says "running" but the reader sees the pid gone, and removes the file.
        victim = instances[1]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        _wait(lambda: not psutil.pid_exists(victim.pid or -1), 30, "the supervisor to reap the killed instance")
        seen = {s.data["instance"]: s for s in read_app_statuses(settings, app="doubler")}
        assert seen[1].state == "stopped"  # shown one last time, its file removed
        assert not victim.path.exists()
        assert [s.data["instance"] for s in read_app_statuses(settings, app="doubler")] == [2]
        assert seen[2].state == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    # The survivor stopped cleanly and said so in its last snapshot.
    last = read_app_statuses(settings, app="doubler")
    assert [(s.data["instance"], s.state, s.data["state"]) for s in last] == [(2, "stopped", "stopped")], out
    assert read_app_statuses(settings, app="doubler") == []  # its pid is gone: the file went with that read
    assert f"metrics on http://127.0.0.1:{port}/metrics" in out


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_metrics_port_in_use_stops_the_app_before_it_reads_anything(tmp_path: Path) -> None:
    import socket

    (tmp_path / "doubler.py").write_text(APP)
    hw = StreamHome(tmp_path)
    _feed(hw)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = hw.cli("stream", "run", "doubler.py:app", "--metrics-port", str(port), timeout=60)
    assert proc.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in proc.stderr + proc.stdout
    assert "--metrics-port" in proc.stderr + proc.stdout  # the hint
    broker = hw.broker()
    try:
        assert broker.group_lag("doubler", ["numbers"]) == [] or all(
            lag.committed is None for lag in broker.group_lag("doubler", ["numbers"]))
        assert broker.describe_topic("doubled").end_offsets == {0: 0}
    finally:
        broker.close()


def test_stream_status_without_instances_says_how_to_start_one(tmp_path: Path) -> None:
    hw = StreamHome(tmp_path)
    proc = hw.cli("stream", "status", check=True)
    assert "no stream app has reported" in proc.stdout
    assert "headwater stream run module:app" in proc.stdout
    assert hw.cli("stream", "status", "--json", check=True).stdout.strip() == "[]"
