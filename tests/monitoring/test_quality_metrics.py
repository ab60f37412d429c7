"""``Stream.check`` and ``Stream.monitor_drift`` under a StreamMonitor: violations and drift alerts exported."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from headwater.ml.profile import profile
from headwater.monitoring.metrics import new_registry
from headwater.monitoring.stream import StreamMonitor
from headwater.quality import quality_metrics
from headwater.stream.app import StreamApp
from headwater.stream.memory import MemoryBroker
from tests.ml.house_features import synthetic_houses

INPUTS = ["date", "bedrooms", "bathrooms", "sqft_living", "sqft_lot", "floors", "waterfront", "condition", "grade",
          "yr_built", "yr_renovated", "zipcode", "lat", "long"]


def _listings(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.drop("price").with_columns(pl.col("date").cast(pl.String)).to_dicts()


def test_check_violations_and_drift_alerts_are_exported_and_shown_as_recent_alerts() -> None:
    prof = profile(synthetic_houses(5000, seed=11), categorical=["zipcode"])
    before = _listings(synthetic_houses(2000, seed=92))
    before[10]["sqft_living"] = 60_000  # out of the training range
    before[20]["zipcode"] = 12345  # never seen in training
    before[30]["zipcode"] = 12345
    shifted = _listings(synthetic_houses(3000, seed=93).with_columns(pl.col("sqft_living") * 1.5))
    rows = before + shifted

    app = StreamApp("house_pricing", max_batch_records=700, max_batch_latency=0)
    (app.stream("houses")
        .check(prof, columns=INPUTS, categorical=["zipcode"], policy="flag")
        .monitor_drift(prof, categorical=["zipcode"], window=1000, every=250, alerts_topic="houses.alerts")
        .to("houses.priced"))
    broker = MemoryBroker()
    for topic in ("houses", "houses.priced", "houses.alerts"):
        broker.create_topic(topic, 1)
    producer = broker.producer()
    producer.produce_batch("houses", [json.dumps(r).encode() for r in rows])
    producer.flush()

    registry = new_registry(process=False)
    monitor = StreamMonitor(app, registry=registry)
    with monitor:
        app.run(broker, stop_when_idle=True, handle_signals=False, monitor=monitor)

    text = generate_latest(registry).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    steps = quality_metrics(app)
    checked = steps["check"]["violations"]
    assert checked["range"]["sqft_living"] >= 1 and checked["unseen"]["zipcode"] == 2
    exported = {(dict(labels)["check"], dict(labels)["column"]): v for (name, labels), v in samples.items()
                if name == "headwater_data_check_violations_total"}
    assert exported == {(kind, column): n for kind, columns in checked.items() for column, n in columns.items()}

    drift = steps["monitor_drift"]
    assert drift["alerts"] >= 1 and "sqft_living:psi" in drift["alerting"]
    alerts = {(dict(labels)["check"], dict(labels)["column"]): v for (name, labels), v in samples.items()
              if name == "headwater_drift_alerts_total"}
    assert sum(alerts.values()) == drift["alerts"] == app.metrics.out_by_topic["houses.alerts"]
    assert alerts[("psi", "sqft_living")] >= 1

    recent = monitor.snapshot()["recent_alerts"]
    assert any(a["kind"] == "drift" and a["column"] == "sqft_living" and "psi of sqft_living" in a["message"]
               for a in recent)
    assert any(a["kind"] == "check" and a["check"] == "unseen" and a["column"] == "zipcode" and a["count"] == 2
               for a in recent)
