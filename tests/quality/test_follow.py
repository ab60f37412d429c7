"""Quality steps given a registry reference: the champion's profile on the first batch, then the new one's."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from headwater.clock import FakeClock
from headwater.ml.registry_sql import SqlModelRegistry, memory_registry
from headwater.ml.train import train
from headwater.quality import CheckConfigError, quality_metrics
from headwater.stream.app import StreamApp
from headwater.stream.log import EmbeddedBroker
from headwater.stream.testing import run_app
from tests.ml.house_features import house_features, synthetic_houses


@pytest.fixture(scope="module")
def registry() -> SqlModelRegistry:
    """Version 1 (champion) trained on houses up to 6000 sqft, version 2 on houses 1.5 times larger."""
    reg = memory_registry()
    small = synthetic_houses(600, seed=1)
    large = synthetic_houses(600, seed=2).with_columns((pl.col("sqft_living") * 1.5).cast(pl.Int64))
    for frame in (small, large):
        result = train(frame, target="price", features=house_features(), seed=1, importance_sample=50,
                       importance_repeats=1, estimator=HistGradientBoostingRegressor(max_iter=5, random_state=1))
        result.register(reg, "house_prices", author="test")
    reg.promote("house_prices", 1, who="test", reason="first")
    reg.approve("house_prices", 2, who="test", reason="bigger houses")
    return reg


def _listing(sqft: int) -> dict[str, Any]:
    row: dict[str, Any] = synthetic_houses(1, seed=5).drop("price").to_dicts()[0]
    return {**row, "sqft_living": sqft}


def test_check_follows_the_champion_between_batches(registry: SqlModelRegistry, tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    app = StreamApp("house_pricing")
    app.stream("houses").check("house_prices@champion", registry=registry, categorical=["zipcode"],
                               reload_interval=10, clock=clock).to("houses.checked")
    broker = EmbeddedBroker(tmp_path / "topics", session_timeout=1.0)
    try:
        first = run_app(app, {"houses": [_listing(8000)]}, broker=broker)
        assert first.values("houses.checked")[0]["data_checks"] == ["range:sqft_living"]
        assert quality_metrics(app)["check"]["model_version"] == "house_prices:1"

        registry.promote("house_prices", 2, who="test", reason="bigger houses")
        clock.advance(10)
        second = run_app(app, {"houses": [_listing(8000)]}, broker=broker)
        assert second.values("houses.checked")[1]["data_checks"] == []  # within version 2's range
        assert quality_metrics(app)["check"]["model_version"] == "house_prices:2"
    finally:
        registry.promote("house_prices", 1, who="test", reason="back", force=True)
        broker.close()


def test_a_profile_that_cannot_be_used_stops_the_app_on_the_first_batch(registry: SqlModelRegistry) -> None:
    app = StreamApp("house_pricing")
    app.stream("houses").check("house_prices@champion", registry=registry, categorical=["garage"]).to("out")
    with pytest.raises(CheckConfigError) as caught:
        run_app(app, {"houses": [_listing(1000)]})
    assert "garage" in str(caught.value)


def test_monitor_drift_follows_a_reference(registry: SqlModelRegistry) -> None:
    app = StreamApp("house_pricing")
    app.stream("houses").monitor_drift("house_prices@champion", registry=registry, categorical=["zipcode"],
                                       window=400, every=200, alerts_topic="houses.alerts").to("out")
    assert quality_metrics(app)["monitor_drift"]["model_version"] is None  # nothing resolved at declaration
    rows = synthetic_houses(800, seed=7).drop("price").with_columns(pl.col("sqft_living") * 2).to_dicts()
    result = run_app(app, {"houses": rows})
    assert len(result.values("out")) == 800
    assert ("sqft_living", "psi") in {(a["feature"], a["metric"]) for a in result.values("houses.alerts")}
    assert quality_metrics(app)["monitor_drift"]["model_version"] == "house_prices:1"


@pytest.mark.parametrize("check_first", [True, False], ids=["check-then-predict", "predict-then-check"])
def test_steps_following_one_reference_use_one_version_per_batch(
    registry: SqlModelRegistry, tmp_path: Path, check_first: bool
) -> None:
    """The first step of a batch to look at the alias picks the version; the later ones use it,
    whatever their own reload intervals: a record is not checked against version 2's profile
    and scored by version 1 (or the reverse) while the steps catch up one by one."""
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    app = StreamApp("house_pricing")
    stream = app.stream("houses")

    def check(s: Any, interval: float) -> Any:
        return s.check("house_prices@champion", registry=registry, categorical=["zipcode"], reload_interval=interval,
                       clock=clock)

    def predict(s: Any, interval: float) -> Any:
        return s.predict("house_prices@champion", registry=registry, features=house_features(),
                         output="predicted_price", reload_interval=interval, clock=clock)

    # The first step re-resolves on every batch; the later ones would wait 1,000 s on their own.
    stream = predict(check(stream, 0), 1000) if check_first else check(predict(stream, 0), 1000)
    stream.monitor_drift("house_prices@champion", registry=registry, categorical=["zipcode"], window=100,
                         every=100, reload_interval=1000, clock=clock, alerts_topic="houses.alerts").to("houses.priced")
    broker = EmbeddedBroker(tmp_path / "topics", session_timeout=1.0)
    try:
        first = run_app(app, {"houses": [_listing(8000)]}, broker=broker).values("houses.priced")[-1]
        assert (first["model_version"], first["data_checks"]) == ("house_prices:1", ["range:sqft_living"])

        registry.promote("house_prices", 2, who="test", reason="bigger houses")
        clock.advance(1)  # well inside the later steps' reload interval
        second = run_app(app, {"houses": [_listing(8000)]}, broker=broker).values("houses.priced")[-1]
        assert (second["model_version"], second["data_checks"]) == ("house_prices:2", [])
        metrics = quality_metrics(app)
        assert metrics["check"]["model_version"] == metrics["monitor_drift"]["model_version"] == "house_prices:2"
    finally:
        registry.promote("house_prices", 1, who="test", reason="back", force=True)
        broker.close()
