"""Drift: PSI against hand computations, the sliding-window monitor on shifted and unshifted house data."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import polars as pl
import pytest

from headwater.clock import FakeClock
from headwater.ml.profile import profile
from headwater.quality import DriftConfigError, DriftMonitor, categorical_psi, numeric_psi, psi
from headwater.quality.drift import quantile_bins
from tests.ml.house_features import synthetic_houses


def _psi_by_hand(expected: list[float], observed: list[float], eps: float = 1e-4) -> float:
    total = 0.0
    for e, a in zip(expected, observed, strict=True):
        e, a = max(e, eps), max(a, eps)
        total += (a - e) * math.log(a / e)
    return total


def test_psi_is_the_formula_with_empty_bins_clipped() -> None:
    by_hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(by_hand)
    assert psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]) == pytest.approx(_psi_by_hand([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_numeric_psi_uses_the_stored_quantiles_as_bin_edges() -> None:
    entry = profile(pl.DataFrame({"x": [float(v) for v in range(1, 101)]}))["columns"]["x"]
    q = entry["quantiles"]  # 1..100: p01 = 1.99, p05 = 5.95, p25 = 25.75, ... p99 = 99.01
    values = [3.0, 10.0, 30.0, 30.0, 60.0, 60.0, 60.0, 97.0, 100.0, 500.0]
    edges = [q[k] for k in ("p01", "p05", "p25", "p50", "p75", "p95", "p99")]
    counts = [0] * 8
    for v in values:  # right-closed bins, counted one by one
        counts[sum(1 for e in edges if v > e)] += 1
    # Training mass below each edge: the share of 1..100 that is <= it.
    below = [sum(1 for t in range(1, 101) if t <= e) / 100 for e in edges]
    expected = [b - a for a, b in zip([0.0, *below], [*below, 1.0], strict=True)]
    assert expected == pytest.approx([0.01, 0.04, 0.20, 0.25, 0.25, 0.20, 0.04, 0.01])
    by_hand = _psi_by_hand(expected, [c / len(values) for c in counts])
    assert numeric_psi(entry, values) == pytest.approx(by_hand)
    assert numeric_psi(entry, [float(v) for v in range(1, 101)]) == pytest.approx(0.0, abs=1e-12)


def test_ties_merge_bins_and_keep_the_exact_training_mass() -> None:
    # 60% zeros, like sqft_basement: p01..p50 are all 0.
    values = [0.0] * 60 + [float(v) for v in range(1, 41)]
    entry = profile(pl.DataFrame({"x": values}))["columns"]["x"]
    edges, shares = quantile_bins(entry)
    assert edges[0] == 0.0 and len(set(edges.tolist())) == len(edges)
    assert shares[0] == pytest.approx(0.6)  # the first bin (<= 0) holds the zeros' whole point mass
    assert shares.sum() == pytest.approx(1.0)
    assert numeric_psi(entry, values) == pytest.approx(0.0, abs=1e-12)
    # Without cdf (an older profile) the quantile levels stand in: the zeros' bin expects 0.5.
    old = {k: v for k, v in entry.items() if k != "cdf"}
    assert quantile_bins(old)[1][0] == pytest.approx(0.5)


def test_categorical_psi_counts_unseen_values_as_other() -> None:
    entry = profile(pl.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 20}))["columns"]["c"]
    observed = ["a"] * 2 + ["b"] * 4 + ["z"] * 4 + [None]  # None left out; z never seen
    by_hand = _psi_by_hand([0.5, 0.3, 0.2, 0.0], [0.2, 0.4, 0.0, 0.4])
    assert categorical_psi(entry, observed) == pytest.approx(by_hand)


@pytest.fixture(scope="module")
def house_profile() -> dict[str, Any]:
    return profile(synthetic_houses(5000, seed=11), categorical=["zipcode"])


def _monitor(prof: dict[str, Any], **kw: Any) -> DriftMonitor:
    options: dict[str, Any] = {"categorical": ["zipcode"], "window": 1000, "every": 250}
    return DriftMonitor(prof, **{**options, **kw})


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_unshifted_data_from_the_same_distribution_raises_no_alert(house_profile: dict[str, Any], seed: int) -> None:
    monitor = _monitor(house_profile)
    assert monitor.observe(synthetic_houses(6000, seed=seed)) == []
    assert monitor.evaluations == 24
    assert {"sqft_living", "zipcode", "bedrooms", "price"} <= set(monitor.last)
    assert max(m["psi"] for m in monitor.last.values()) < 0.1


def test_sqft_living_times_1_5_fires_one_alert_for_that_feature(house_profile: dict[str, Any]) -> None:
    monitor = _monitor(house_profile)
    assert monitor.observe(synthetic_houses(2000, seed=31)) == []
    shifted = synthetic_houses(3000, seed=32).with_columns(pl.col("sqft_living") * 1.5,
                                                           pl.lit("house_prices:3").alias("model_version"))
    alerts = monitor.observe(shifted)
    assert [(a["feature"], a["metric"]) for a in alerts] == [("sqft_living", "psi")]  # once, not per evaluation
    alert = alerts[0]
    assert alert["value"] > alert["threshold"] == 0.2
    assert alert["window_size"] == 1000 and alert["model_version"] == "house_prices:3"
    assert alert["window_start"] <= alert["window_end"]
    assert monitor.last["sqft_living"]["psi"] > 0.5
    assert monitor.last["sqft_living"]["mean_shift"] > 0.5  # reported; alerts only when given a threshold


def test_an_alert_repeats_only_after_recovery_or_cooldown(house_profile: dict[str, Any]) -> None:
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    monitor = _monitor(house_profile, clock=clock, features=["sqft_living"])
    shifted = synthetic_houses(2000, seed=41).with_columns(pl.col("sqft_living") * 1.5)
    assert len(monitor.observe(shifted)) == 1
    assert monitor.observe(shifted) == []  # still drifted: no storm
    assert monitor.observe(synthetic_houses(2000, seed=42)) == []  # recovered
    assert len(monitor.observe(shifted)) == 1  # crossed again
    cooled = _monitor(house_profile, clock=clock, features=["sqft_living"], cooldown_seconds=60)
    assert len(cooled.observe(shifted)) == 1
    clock.advance(30)
    assert cooled.observe(shifted) == []
    clock.advance(31)
    assert len(cooled.observe(shifted)) == 1


def test_thresholds_per_feature_and_for_shifts(house_profile: dict[str, Any]) -> None:
    monitor = _monitor(house_profile, features=["sqft_living", "sqft_lot"],
                       thresholds={"psi": 5.0, "sqft_living": {"median_shift": 0.3}})
    assert monitor.thresholds == {"sqft_living": {"psi": 5.0, "median_shift": 0.3}, "sqft_lot": {"psi": 5.0}}
    alerts = monitor.observe(synthetic_houses(2000, seed=51).with_columns(pl.col("sqft_living") * 1.5))
    assert [(a["feature"], a["metric"]) for a in alerts] == [("sqft_living", "median_shift")]


def test_the_window_stays_bounded_by_count_and_by_time(house_profile: dict[str, Any]) -> None:
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    monitor = _monitor(house_profile, window=500, every=100, window_seconds=60, clock=clock)
    buffer = monitor._values
    frame = synthetic_houses(2000, seed=61)
    for _ in range(10):
        monitor.observe(frame)
    assert monitor.window_size == 500
    assert monitor._values is buffer and buffer.shape == (500, len(monitor.features))  # no growth, no copy
    assert monitor.evaluate()  # enough recent records to judge
    clock.advance(61)
    assert monitor.evaluate() == {}  # every record is older than window_seconds


def test_values_the_window_holds_are_the_last_ones(house_profile: dict[str, Any]) -> None:
    monitor = _monitor(house_profile, window=300, every=100, features=["sqft_living"])
    frame = pl.DataFrame({"sqft_living": list(range(1000))})
    monitor.observe(frame.slice(0, 250))
    monitor.observe(frame.slice(250, 750))
    assert sorted(monitor._values[:, 0].tolist()) == list(range(700, 1000))


def test_every_seconds_evaluates_by_time(house_profile: dict[str, Any]) -> None:
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    monitor = _monitor(house_profile, every=None, every_seconds=10, clock=clock)
    monitor.observe(synthetic_houses(500, seed=71))
    assert monitor.evaluations == 0
    clock.advance(10)
    monitor.observe(synthetic_houses(10, seed=72))
    assert monitor.evaluations == 1


@pytest.mark.parametrize(("options", "words"), [
    ({"features": ["no_such"]}, "no_such"),
    ({"thresholds": {"psi": 0}}, "> 0"),
    ({"thresholds": {"psi": -1.0}}, "> 0"),
    ({"thresholds": {"sqft_living": {"psi": 0.0}}}, "> 0"),
    ({"thresholds": {"sqft_living": {"ks": 0.1}}}, "ks"),
    ({"thresholds": {"pis": 0.1}}, "pis"),
    ({"thresholds": {"date": {"psi": 0.1}}}, "date"),
    ({"window": 0}, "window"),
    ({"every": None, "every_seconds": None}, "never evaluated"),
])
def test_bad_configuration_is_a_user_error_with_a_hint(house_profile: dict[str, Any], options: dict[str, Any],
                                                        words: str) -> None:
    with pytest.raises(DriftConfigError) as caught:
        DriftMonitor(house_profile, categorical=["zipcode"], **options)
    assert words in caught.value.message
    assert caught.value.hint or "window" in words


def test_psi_noise_guard_waits_for_enough_records(house_profile: dict[str, Any]) -> None:
    monitor = _monitor(house_profile, window=1000, every=50, min_records=1)
    monitor.observe(synthetic_houses(100, seed=81))
    # 8 bins need (7 + 6 sqrt 14) / 0.2 = 148 records; 30 zip codes (31 bins) (30 + 6 sqrt 60) / 0.2 = 383.
    assert not {"sqft_living", "zipcode"} & set(monitor.evaluate())
    monitor.observe(synthetic_houses(100, seed=82))
    judged = set(monitor.evaluate())
    assert "sqft_living" in judged and "zipcode" not in judged
    monitor.observe(synthetic_houses(200, seed=83))
    assert "zipcode" in set(monitor.evaluate())
    assert np.isfinite([m["psi"] for m in monitor.evaluate().values()]).all()


def test_values_of_no_numeric_type_or_missing_columns_are_left_out(house_profile: dict[str, Any]) -> None:
    monitor = _monitor(house_profile, features=["sqft_living", "zipcode", "bedrooms"], every=2, min_records=1)
    frame = pl.DataFrame({"sqft_living": [[1000], [2000]], "zipcode": ["98001", "98004"]})  # a list; no bedrooms
    assert monitor.observe(frame) == []
    window = monitor._values[:2]
    assert np.isnan(window[:, 0]).all() and np.isnan(window[:, 2]).all()
    assert window[:, 1].tolist() == [0.0, 1.0]  # zip codes given as text still find their category


def test_the_last_metrics_render_as_a_table(house_profile: dict[str, Any]) -> None:
    from rich.console import Console

    monitor = _monitor(house_profile, features=["sqft_living", "sqft_lot"])
    monitor.observe(synthetic_houses(1000, seed=91).with_columns(pl.col("sqft_living") * 1.5))
    console = Console(record=True, width=120)
    console.print(monitor.table())
    lines = console.export_text().splitlines()
    living = next(line for line in lines if "sqft_living" in line)
    assert f"{monitor.last['sqft_living']['psi']:.3f} / 0.2" in living
    assert "Drift over the last 1,000 records" in "\n".join(lines)
