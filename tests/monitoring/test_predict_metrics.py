"""A real ``Stream.predict`` step under a StreamMonitor: the prediction histogram and the model version in use."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.ensemble import HistGradientBoostingRegressor

from headwater.ml.registry_sql import memory_registry
from headwater.ml.train import train
from headwater.monitoring.metrics import PREDICTION_BUCKETS, new_registry
from headwater.monitoring.stream import StreamMonitor
from headwater.stream.app import StreamApp
from headwater.stream.broker import TopicPartition
from headwater.stream.memory import MemoryBroker
from tests.ml.house_features import house_features, synthetic_houses
from tests.stream.brokertools import drain

N = 300
STEP = "predict:house_prices@champion"  # the step's name in the topology


def _samples(registry: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_predictions_and_model_version_are_exported_per_step() -> None:
    model = train(synthetic_houses(600, seed=1), target="price", features=house_features(),
                  estimator=HistGradientBoostingRegressor(max_iter=10, random_state=1), seed=1,
                  importance_sample=100, importance_repeats=1)
    models = memory_registry()
    model.register(models, "house_prices", author="test")
    models.promote("house_prices", 1, who="test", reason="first model")

    app = StreamApp("scorer", max_batch_records=64, max_batch_latency=0)
    app.stream("houses").predict("house_prices@champion", output="predicted_price", registry=models,
                                 features=house_features).to("scored")
    broker = MemoryBroker()
    broker.create_topic("houses", 1)
    broker.create_topic("scored", 1)
    rows = synthetic_houses(N, seed=7).drop("price").with_columns(pl.col("date").cast(pl.String)).to_dicts()
    producer = broker.producer()
    producer.produce_batch("houses", [json.dumps(r).encode() for r in rows])
    producer.flush()

    registry = new_registry(process=False)
    monitor = StreamMonitor(app, registry=registry, lag_interval=0.0)
    assert monitor.models() == [{"step": STEP, "model": "house_prices@champion", "version": None}]
    with monitor:
        app.run(broker, stop_when_idle=True, handle_signals=False, monitor=monitor)

    consumer = broker.consumer(None)
    consumer.assign([TopicPartition("scored", 0)])
    scored = [json.loads(r[4]) for r in drain(consumer, N)]
    assert len(scored) == N
    predicted = [r["predicted_price"] for r in scored]
    samples = _samples(registry)
    labels = {("app", "scorer"), ("step", STEP), ("model", "house_prices:1")}
    assert samples["headwater_stream_prediction_count", frozenset(labels)] == N
    assert samples["headwater_stream_prediction_sum", frozenset(labels)] == pytest.approx(sum(predicted))
    for bound in (PREDICTION_BUCKETS[5], PREDICTION_BUCKETS[10], PREDICTION_BUCKETS[15]):
        le = frozenset(labels | {("le", repr(bound))})
        assert samples["headwater_stream_prediction_bucket", le] == sum(p <= bound for p in predicted)
    info = {k: v for k, v in samples.items() if k[0] == "headwater_stream_model_info"}
    assert info == {("headwater_stream_model_info", frozenset({
        ("app", "scorer"), ("step", STEP), ("model", "house_prices@champion"), ("version", "house_prices:1"),
    })): 1.0}
    assert monitor.models() == [{"step": STEP, "model": "house_prices@champion", "version": "house_prices:1"}]
    (shown,) = monitor.snapshot()["predictions"]
    assert (shown["step"], shown["model"], shown["count"]) == (STEP, "house_prices:1", N)
    assert sum(n for _, n in shown["histogram"]) == N
