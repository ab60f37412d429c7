"""A stream app run in this process with a StreamMonitor: /metrics scraped over HTTP, the status file read back."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from headwater.errors import UserError
from headwater.monitoring import hooks
from headwater.monitoring.histogram import BulkHistogram
from headwater.monitoring.metrics import PREDICTION_BUCKETS, new_registry, parse_buckets
from headwater.monitoring.prometheus import serve
from headwater.monitoring.status import read_app_statuses, status_path, write_status
from headwater.monitoring.stream import StreamMonitor
from headwater.settings import Settings
from headwater.stream.app import StreamApp
from headwater.stream.kernel import StreamKernel
from headwater.stream.memory import MemoryBroker
from tests.monitoring.promtools import scrape, series, total

N = 400


class LagLog(StreamMonitor):
    """Keeps every lag it measures (the test's window on what the gauge showed over time)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[dict[tuple[str, int], int]] = []

    def tick(self, kernel: StreamKernel) -> None:
        super().tick(kernel)
        self.history.append(dict(self.lag))


def _inputs() -> tuple[list[bytes], int, int]:
    """N records on 2 partitions: some not JSON, some with a negative price (the map raises)."""
    values: list[bytes] = []
    garbage = negative = 0
    for i in range(N):
        if i % 40 == 7:
            values.append(b"not json {")
            garbage += 1
        elif i % 25 == 3:
            values.append(json.dumps({"id": i, "price": -1, "sqft": 10}).encode())
            negative += 1
        else:
            values.append(json.dumps({"id": i, "price": 1000 * i, "sqft": 50 + i % 7}).encode())
    return values, garbage, negative


def _price(house: dict[str, Any]) -> dict[str, Any]:
    if house["price"] < 0:
        raise ValueError(f"negative price in record {house['id']}")
    return {**house, "per_sqft": house["price"] / house["sqft"]}


def _report(frame: pl.DataFrame) -> pl.DataFrame:
    # What a predict step and a data-check step report, once per batch.
    hooks.predictions("fake_predict", "fake:1", frame["price"].to_numpy())
    hooks.check_violations("min_price", "price", int((frame["price"] < 20_000).sum()), message="cheap houses")
    return frame


def _app() -> StreamApp:
    app = StreamApp("pricer", max_batch_records=50, max_batch_latency=0)
    priced = app.stream("houses").map(_price).map_batch(_report)
    cheap, dear = priced.branch(pl.col("price") < 200_000)
    cheap.to("cheap")
    dear.to("dear")
    return app


def _broker() -> MemoryBroker:
    broker = MemoryBroker()
    for topic, parts in (("houses", 2), ("cheap", 1), ("dear", 1)):
        broker.create_topic(topic, parts)
    values, _, _ = _inputs()
    producer = broker.producer()
    producer.produce_batch("houses", values, [b"%d" % i for i in range(N)])
    producer.flush()
    return broker


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"HEADWATER_HOME": str(tmp_path / "home")})


def test_metrics_over_http_equal_the_apps_own_counts(tmp_path: Path) -> None:
    app, broker = _app(), _broker()
    _, garbage, negative = _inputs()
    registry = new_registry()
    path = status_path(_settings(tmp_path), app.name, "box-1")
    monitor = LagLog(app, registry=registry, status_path=path, lag_interval=0.0, interval=60)
    server = serve(0, registry)
    try:
        with monitor:
            app.run(broker, stop_when_idle=True, handle_signals=False, monitor=monitor)
        samples = scrape(server.url)
    finally:
        server.close()

    m = app.metrics
    assert m.records_in == N and m.records_dead_lettered == garbage + negative
    assert total(samples, "headwater_stream_records_in_total", app="pricer", topic="houses") == m.records_in
    assert total(samples, "headwater_stream_records_dead_lettered_total", app="pricer") == m.records_dead_lettered
    assert total(samples, "headwater_stream_records_dead_lettered_total", topic="houses") == m.records_dead_lettered
    for topic in ("cheap", "dear"):
        assert total(samples, "headwater_stream_records_out_total", app="pricer", topic=topic) == m.out_by_topic[topic]
    assert total(samples, "headwater_stream_records_out_total") == m.records_out == N - garbage - negative
    assert total(samples, "headwater_stream_batch_records_count") == m.batches
    assert total(samples, "headwater_stream_batch_records_sum") == N
    assert total(samples, "headwater_stream_batch_duration_seconds_count") == m.batches
    # Every batch is at most 50 records: the 50 bucket holds them all.
    assert total(samples, "headwater_stream_batch_records_bucket", le="50.0") == m.batches

    # Predictions: one histogram observation per record scored, the sum of the values predicted.
    prices = [1000 * i for i in range(N) if i % 40 != 7 and i % 25 != 3]
    assert total(samples, "headwater_stream_prediction_count", step="fake_predict", model="fake:1") == len(prices)
    assert total(samples, "headwater_stream_prediction_sum", model="fake:1") == pytest.approx(sum(prices))
    assert total(samples, "headwater_stream_prediction_bucket", le="+Inf") == len(prices)
    assert total(samples, "headwater_stream_prediction_bucket", le="20000.0") == sum(p <= 20_000 for p in prices)
    cheap = sum(p < 20_000 for p in prices)
    assert total(samples, "headwater_data_check_violations_total", check="min_price", column="price") == cheap

    # Lag: measured after every batch here (lag_interval=0); it falls to 0 on both partitions.
    measured = [h for h in monitor.history if h]
    assert measured, "the lag was never measured"
    firsts = sum(measured[0].values())
    assert 0 < firsts < N
    assert measured[-1] == {("houses", 0): 0, ("houses", 1): 0}
    assert series(samples, "headwater_stream_consumer_lag") == {
        frozenset({("app", "pricer"), ("topic", "houses"), ("partition", p)}): 0.0 for p in ("0", "1")}

    # The status file: the final snapshot says the same.
    snap = json.loads(path.read_text())
    assert snap["state"] == "stopped" and snap["pid"] == os.getpid()
    assert snap["counters"]["records_in"] == N
    assert snap["counters"]["records_dead_lettered"] == garbage + negative
    assert snap["counters"]["dead_by_topic"] == {"houses": garbage + negative}
    assert snap["counters"]["out_by_topic"] == m.out_by_topic
    assert snap["batch_latency"]["count"] == m.batches
    assert 0 < snap["batch_latency"]["p50"] <= snap["batch_latency"]["p99"] <= snap["batch_latency"]["max"]
    assert {(p["topic"], p["partition"]) for p in snap["partitions"]} == {("houses", 0), ("houses", 1)}
    reasons = snap["recent_dead_letters"]
    assert 0 < len(reasons) <= 20
    for r in reasons:  # the newest 20, each with its step and why
        assert (r["step"], "malformed" in r["error"] or "ValueError: negative price" in r["error"]) in {
            ("decode:houses", True), ("map:_price", True)}, r
    assert all(r["topic"] == "houses" and r["partition"] in (0, 1) for r in reasons)
    assert snap["recent_alerts"] and snap["recent_alerts"][-1]["check"] == "min_price"
    (predicted,) = snap["predictions"]
    assert (predicted["step"], predicted["model"], predicted["count"]) == ("fake_predict", "fake:1", len(prices))
    histogram = predicted["histogram"]  # [[upper bound, count in (previous bound, bound]], ...]
    assert sum(n for _, n in histogram) == len(prices)
    lower = float("-inf")
    for bound, n in histogram:
        assert n == sum(lower < p <= bound for p in prices), (bound, n)
        lower = bound
    assert [b for b, _ in histogram] == list(PREDICTION_BUCKETS)  # no value above the last bound: no extra pair
    # Hooks go back to nobody once the monitor is closed.
    assert hooks.active() is None


def test_status_reader_marks_stale_instances_stopped_and_keeps_live_ones(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    base = {"format": 1, "app": "a", "pid": os.getpid(), "hostname": os.uname().nodename, "state": "running"}
    write_status(status_path(settings, "a", "fresh"), {**base, "heartbeat": now.isoformat()})
    old = (now - dt.timedelta(seconds=60)).isoformat()
    write_status(status_path(settings, "a", "hung"), {**base, "heartbeat": old})
    write_status(status_path(settings, "b", "done"), {**base, "app": "b", "state": "stopped",
                                                      "heartbeat": now.isoformat()})
    (status_path(settings, "b", "junk")).write_text("{not json")
    (status_path(settings, "b", "other")).write_text(json.dumps({"format": 99}))

    got = {(s.app, s.instance_id): s for s in read_app_statuses(settings, now=now, stale_after=15)}

    assert set(got) == {("a", "fresh"), ("a", "hung"), ("b", "done")}
    assert got["a", "fresh"].state == "running" and not got["a", "fresh"].stale
    assert got["a", "hung"].state == "stopped" and got["a", "hung"].stale
    assert got["b", "done"].state == "stopped" and not got["b", "done"].stale
    # This process is alive: nothing is removed.
    assert status_path(settings, "a", "hung").exists()
    assert [s.instance_id for s in read_app_statuses(settings, app="a", now=now)] == ["fresh", "hung"]
    assert read_app_statuses(Settings.from_env({"HEADWATER_HOME": str(tmp_path / "none")})) == []


def test_a_status_write_leaves_no_temporary_file_and_replaces_the_old_one(tmp_path: Path) -> None:
    path = status_path(_settings(tmp_path), "a", "x")
    write_status(path, {"n": 1})
    write_status(path, {"n": 2})
    assert json.loads(path.read_text()) == {"n": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]


def test_a_status_path_refuses_names_that_leave_the_folder(tmp_path: Path) -> None:
    for bad in ("..", "a/b", ""):
        with pytest.raises(ValueError, match="not a stream app name"):
            status_path(_settings(tmp_path), bad, "x")


def test_prediction_buckets_from_text_and_bad_text_refused_with_a_hint() -> None:
    assert parse_buckets("exp:100,2,4") == (100.0, 200.0, 400.0, 800.0)
    assert parse_buckets("1, 5,10") == (1.0, 5.0, 10.0)
    for bad in ("exp:1,1,3", "5,1", "a,b", "exp:1,2", "1,inf"):
        with pytest.raises(UserError) as info:
            parse_buckets(bad)
        assert info.value.hint and "HEADWATER_PREDICTION_BUCKETS" in info.value.hint


def test_a_metrics_port_in_use_is_a_clear_error() -> None:
    registry = new_registry(process=False)
    first = serve(0, registry)
    try:
        with pytest.raises(UserError) as info:
            serve(first.port, registry)
        assert f"127.0.0.1:{first.port}" in str(info.value)
        assert info.value.hint and "--metrics-port" in info.value.hint
    finally:
        first.close()


def test_bulk_histogram_counts_for_json_end_with_the_largest_value_above_the_last_bound() -> None:
    hist = BulkHistogram("h", "doc", ("a",), (10, 100))
    assert hist.observe_many(("x",), [5.0, 10.0, 50.0, 500.0, 700.0, float("nan")]) == 5
    assert hist.counts(("x",)) == [[10.0, 2.0], [100.0, 1.0], [700.0, 2.0]]
    assert hist.counts(("y",)) == []
    (family,) = hist.collect()
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "h_bucket"}
    assert buckets == {"10.0": 2.0, "100.0": 3.0, "+Inf": 5.0}  # cumulative, as Prometheus wants
    assert [s.value for s in family.samples if s.name == "h_sum"] == [1265.0]


def test_metrics_port_from_option_variable_and_instance() -> None:
    from headwater.monitoring.prometheus import metrics_port

    assert metrics_port(None, {}) == 0
    assert metrics_port(None, {"HEADWATER_METRICS_PORT": "9108"}) == 9108
    assert metrics_port(9200, {"HEADWATER_METRICS_PORT": "9108"}) == 9200
    assert metrics_port(0, {"HEADWATER_METRICS_PORT": "9108"}) == 0  # an explicit 0 turns it off
    assert metrics_port(None, {"HEADWATER_METRICS_PORT": " "}) == 0
    assert [metrics_port(9108, {}, instance=i) for i in (None, 1, 2, 3)] == [9108, 9108, 9109, 9110]
    assert metrics_port(0, {}, instance=3) == 0
    for env, hint in (({"HEADWATER_METRICS_PORT": "nine"}, "HEADWATER_METRICS_PORT=9108"),
                      ({"HEADWATER_METRICS_PORT": "70000"}, "0 turns the metrics server off")):
        with pytest.raises(UserError) as info:
            metrics_port(None, env)
        assert info.value.hint and hint in info.value.hint
    with pytest.raises(UserError, match="beyond 65535"):
        metrics_port(65535, {}, instance=2)
