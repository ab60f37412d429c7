"""``Stream.check`` and ``Stream.monitor_drift`` in stream apps on the embedded log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from headwater.ml.profile import profile
from headwater.quality import CheckConfigError, DriftConfigError, ProfileChecks, check_frame, quality_metrics
from headwater.stream.app import StreamApp
from headwater.stream.log import EmbeddedBroker
from headwater.stream.testing import run_app
from tests.ml.house_features import synthetic_houses

INPUTS = ["date", "bedrooms", "bathrooms", "sqft_living", "sqft_lot", "floors", "waterfront", "condition", "grade",
          "yr_built", "yr_renovated", "zipcode", "lat", "long"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    made = EmbeddedBroker(tmp_path / "topics", session_timeout=1.0)
    yield made
    made.close()


@pytest.fixture(scope="module")
def house_profile() -> dict[str, Any]:
    return profile(synthetic_houses(5000, seed=11), categorical=["zipcode"])


def _listings(n: int, seed: int) -> list[dict[str, Any]]:
    return synthetic_houses(n, seed=seed).drop("price").to_dicts()


def _bad_listings() -> list[dict[str, Any]]:
    """Clean, out of range, unseen zip, missing required value, unparseable, clean."""
    rows = _listings(6, seed=3)
    rows[1]["sqft_living"] = 60_000
    rows[2]["zipcode"] = 12345
    rows[3]["sqft_lot"] = None
    rows[4]["grade"] = "excellent"
    return rows


def _check_app(prof: dict[str, Any], **kw: Any) -> StreamApp:
    app = StreamApp("house_pricing")
    app.stream("houses").check(prof, columns=INPUTS, categorical=["zipcode"], **kw).to("houses.checked")
    return app


def test_flag_policy_lets_every_record_go_on_with_its_violations(
    broker: EmbeddedBroker, house_profile: dict[str, Any]
) -> None:
    rows = _bad_listings()
    app = _check_app(house_profile, policy="flag")
    result = run_app(app, {"houses": rows}, broker=broker)
    out = result.values("houses.checked")
    assert [r["data_checks"] for r in out] == [
        [], ["range:sqft_living"], ["unseen:zipcode"], ["null:sqft_lot"], ["type:grade"], []]
    for got, sent in zip(out, rows, strict=True):
        assert {k: v for k, v in got.items() if k != "data_checks"} == sent  # values untouched
    assert result.dead_letters == []
    metrics = quality_metrics(app)["check"]
    assert metrics["rows_checked"] == 6 and metrics["rows_flagged"] == 4 and metrics["rows_dead_lettered"] == 0
    assert metrics["violations"] == {"range": {"sqft_living": 1}, "unseen": {"zipcode": 1}, "null": {"sqft_lot": 1},
                                     "type": {"grade": 1}}


def test_dead_letter_policy_routes_violations_with_the_reason_and_leaves_clean_records_as_sent(
    broker: EmbeddedBroker, house_profile: dict[str, Any]
) -> None:
    rows = _bad_listings()
    app = _check_app(house_profile, policy="dead_letter")
    result = run_app(app, {"houses": rows}, broker=broker)
    assert result.values("houses.checked") == [rows[0], rows[5]]  # no column added: nothing to flag
    dead = sorted(result.dead_letters, key=lambda d: d.offset)
    assert [d.offset for d in dead] == [1, 2, 3, 4]
    assert all(d.step == "check" and d.error_type.endswith("DataCheckError") for d in dead)
    assert "sqft_living=60000 outside the training range" in dead[0].error_message
    assert "zipcode=12345 never seen in training" in dead[1].error_message
    assert "null:sqft_lot" in dead[2].error_message
    assert json.loads(dead[3].value or b"") == rows[4]  # the original record, for a replay after a fix
    assert quality_metrics(app)["check"]["rows_dead_lettered"] == 4


def test_policy_per_kind(broker: EmbeddedBroker, house_profile: dict[str, Any]) -> None:
    rows = _bad_listings()
    app = _check_app(house_profile, policy={"null": "dead_letter", "type": "dead_letter"})
    result = run_app(app, {"houses": rows}, broker=broker)
    assert [r["data_checks"] for r in result.values("houses.checked")] == [
        [], ["range:sqft_living"], ["unseen:zipcode"], []]
    assert sorted(d.offset for d in result.dead_letters) == [3, 4]


def test_checks_built_beforehand_and_bad_configuration_at_declaration(house_profile: dict[str, Any]) -> None:
    ready = ProfileChecks(house_profile, columns=INPUTS, categorical=["zipcode"])
    app = StreamApp("checked")
    app.stream("houses").check(ready, column="flags").to("out")
    result = run_app(app, {"houses": _bad_listings()[:2]})
    assert [r["flags"] for r in result.values("out")] == [[], ["range:sqft_living"]]
    with pytest.raises(CheckConfigError) as caught:
        StreamApp("bad").stream("houses").check(house_profile, policy="drop")
    assert "dead_letter" in (caught.value.hint or "")
    with pytest.raises(CheckConfigError):
        StreamApp("bad").stream("houses").check(house_profile, policy={"range": "flag", "nulls": "dead_letter"})
    with pytest.raises(CheckConfigError):
        StreamApp("bad").stream("houses").check(house_profile, columns=["sqft_living", "garage"])


def _drift_app(prof: dict[str, Any], **kw: Any) -> StreamApp:
    app = StreamApp("house_pricing", max_batch_records=700)
    app.stream("houses").monitor_drift(prof, categorical=["zipcode"], window=1000, every=250,
                                       alerts_topic="houses.alerts", **kw).to("houses.priced")
    return app


def test_monitor_drift_passes_records_unchanged_and_stays_silent_on_unshifted_data(
    broker: EmbeddedBroker, house_profile: dict[str, Any]
) -> None:
    rows = _listings(4000, seed=91)
    app = _drift_app(house_profile)
    result = run_app(app, {"houses": rows}, broker=broker)
    assert result.values("houses.priced") == rows
    assert result.values("houses.alerts") == []
    metrics = quality_metrics(app)["monitor_drift"]
    assert metrics["evaluations"] == 16 and metrics["alerts"] == 0 and metrics["window_size"] == 1000


def test_monitor_drift_alerts_on_shifted_sqft_living(broker: EmbeddedBroker, house_profile: dict[str, Any]) -> None:
    before = _listings(2000, seed=92)
    shifted = (synthetic_houses(3000, seed=93).drop("price")
               .with_columns(pl.col("sqft_living") * 1.5, pl.lit("house_prices:3").alias("model_version")).to_dicts())
    app = _drift_app(house_profile)
    result = run_app(app, {"houses": before + shifted}, broker=broker)
    assert len(result.values("houses.priced")) == 5000
    alerts = result.outputs["houses.alerts"]
    assert [(a.value["feature"], a.value["metric"]) for a in alerts] == [("sqft_living", "psi")]
    alert = alerts[0]
    assert alert.key == b"sqft_living"
    assert alert.value["value"] > 0.2 and alert.value["threshold"] == 0.2
    assert alert.value["model_version"] == "house_prices:3" and alert.value["window_size"] == 1000
    assert alert.value["step"] == "monitor_drift"
    assert quality_metrics(app)["monitor_drift"]["alerting"] == ["sqft_living:psi"]


def test_monitor_drift_refuses_bad_configuration(house_profile: dict[str, Any]) -> None:
    stream = StreamApp("bad").stream("houses")
    with pytest.raises(DriftConfigError) as caught:
        stream.monitor_drift(house_profile, alerts_topic="alerts", thresholds={"psi": 0})
    assert caught.value.hint
    with pytest.raises(DriftConfigError):
        stream.monitor_drift(house_profile, alerts_topic="alerts", features=["garage"])


def test_check_then_monitor_in_one_app(broker: EmbeddedBroker, house_profile: dict[str, Any]) -> None:
    """The shape of the house_pricing app: check (flag), then drift, records reach the sink with their flags."""
    rows = _listings(1200, seed=94)
    rows[5]["zipcode"] = 12345
    app = StreamApp("house_pricing")
    (app.stream("houses")
        .check(house_profile, columns=INPUTS, categorical=["zipcode"], policy={"missing": "dead_letter"})
        .monitor_drift(house_profile, features=["sqft_living", "zipcode"], categorical=["zipcode"], window=500,
                       every=100, alerts_topic="houses.alerts")
        .to("houses.priced"))
    result = run_app(app, {"houses": rows}, broker=broker, max_batch_records=250)
    out = result.values("houses.priced")
    assert len(out) == 1200 and out[5]["data_checks"] == ["unseen:zipcode"]
    # The same flags as the batch check of the same rows, row for row (batches of the app differ in size).
    batch = check_frame(pl.DataFrame(rows), house_profile, columns=INPUTS, categorical=["zipcode"])
    assert [r["data_checks"] for r in out] == batch.frame.get_column("data_checks").to_list()
    assert result.values("houses.alerts") == []
    assert set(quality_metrics(app)) == {"check", "monitor_drift"}


def test_monitor_drift_changes_no_value_even_in_a_batch_of_mixed_types(house_profile: dict[str, Any]) -> None:
    rows = _listings(300, seed=95)
    rows[7]["grade"] = "excellent"  # a frame of this batch holds grade as text; the records must not
    app = StreamApp("house_pricing")
    # map(): the next step sees the values themselves (a sink alone would write the original bytes).
    (app.stream("houses").monitor_drift(house_profile, categorical=["zipcode"], alerts_topic="houses.alerts")
        .map(lambda house: house).to("houses.priced"))
    result = run_app(app, {"houses": rows})
    assert result.values("houses.priced") == rows
