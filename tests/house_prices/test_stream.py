"""The house_pricing app on the trained sample: batch = stream predictions, live zip updates, drift alerts."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from house_prices import scenario, training
from house_prices.stream_app import (
    ALERTS_TOPIC,
    PRICED_TOPIC,
    SOURCE_TOPIC,
    TOPICS,
    ZIP_CHANGELOG,
    build,
    stats_table,
)

from headwater.ml.split import frame_hash, split
from headwater.quality.stream import quality_metrics
from headwater.stream.memory import MemoryBroker
from headwater.stream.testing import run_app

from .conftest import Trained

pytestmark = pytest.mark.slow


def rows_of(trained: Trained) -> dict[str, pl.DataFrame]:
    history = pl.read_parquet(trained.folders["prepared"] / "history.parquet")
    return {"test": split(history, time_column="sale_date").test,
            "listings": pl.read_parquet(trained.folders["prepared"] / "listings.parquet")}


def broker_with_topics() -> MemoryBroker:
    """A broker with the app's topics, the zip changelog among them (a table refuses to follow a missing one)."""
    broker = MemoryBroker()
    for topic in TOPICS:
        broker.create_topic(topic, 1)
    return broker


def as_listings(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """What the source topic carries: the raw fields, no price."""
    return frame.drop("price", "sale_date", strict=False).to_dicts()


def test_batch_scoring_of_the_test_split_equals_stream_scoring_row_for_row(trained: Trained) -> None:
    registry = trained.home.registry()
    champion = registry.resolve("house_prices@champion")
    test = rows_of(trained)["test"]
    assert frame_hash(test) == champion.data_hash("test")  # the very rows the model was measured on

    source = trained.home.path / "test_split.parquet"
    test.drop("price", "sale_date").write_parquet(source)
    scored = trained.home.path / "test_split.scored.parquet"
    trained.home.cli("models", "score", "house_prices@champion", str(source), str(scored),
                     "--output-column", "predicted_price")
    batch = pl.read_parquet(scored)

    # Odd micro-batches, so the stream sees the rows cut differently from the batch file.
    result = run_app(build(champion, registry=registry), inputs={SOURCE_TOPIC: as_listings(test)},
                     broker=broker_with_topics(), max_batch_records=37)
    stream = result.values(PRICED_TOPIC)
    assert not result.dead_letters
    assert [r["id"] for r in stream] == batch["id"].to_list() == test["id"].to_list()
    assert test.height > 200
    batch_prices = batch["predicted_price"].to_numpy()
    stream_prices = np.array([r["predicted_price"] for r in stream])
    assert np.array_equal(batch_prices, stream_prices), np.abs(batch_prices - stream_prices).max()
    assert {r["model_version"] for r in stream} == {champion.ref}


def test_a_zip_code_update_on_the_changelog_changes_later_records_without_a_restart(trained: Trained) -> None:
    registry = trained.home.registry()
    app = build(registry.resolve("house_prices@champion"), registry=registry)
    broker = broker_with_topics()
    listing = as_listings(rows_of(trained)["listings"])[0]
    producer = broker.producer()
    runner = threading.Thread(target=app.run, args=(broker,), kwargs={"handle_signals": False}, daemon=True)
    runner.start()

    def price_one() -> dict[str, Any]:
        before = scenario.end_offset(broker, PRICED_TOPIC)
        producer.produce(SOURCE_TOPIC, scenario_json(listing), str(listing["zipcode"]).encode())
        producer.flush()
        deadline = time.monotonic() + 30
        while scenario.end_offset(broker, PRICED_TOPIC) == before:
            assert runner.is_alive() and time.monotonic() < deadline, "the app stopped pricing"
            time.sleep(0.02)
        return scenario.read_json(broker, PRICED_TOPIC, before)[0]  # type: ignore[no-any-return]

    try:
        first = price_one()
        assert first["city"] != "Fremont"
        producer.produce(ZIP_CHANGELOG, scenario_json({"op": "upsert", "key": listing["zipcode"],
                                                       "value": {"city": "Fremont", "county": "King County"}}))
        producer.flush()
        # The table follows its changelog between batches: within a bounded number of listings
        # the update shows, and every listing after it keeps it.
        cities: list[str] = []
        while cities.count("Fremont") < 3 and len(cities) < 200:
            cities.append(price_one()["city"])
        assert "Fremont" in cities, cities
        switched = cities.index("Fremont")
        assert cities[switched:] == ["Fremont"] * (len(cities) - switched)  # and stays updated
        assert runner.is_alive()  # the same app, never restarted
    finally:
        app.stop()
        runner.join(30)
    assert not runner.is_alive()


def stats_by_zip(stats: pl.DataFrame) -> dict[int, float]:
    return dict(zip(stats["zipcode"].to_list(), stats["zip_median_price_per_sqft"].to_list(), strict=True))


def scenario_json(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def test_drift_alert_on_shifted_listings_and_silence_on_unshifted(trained: Trained) -> None:
    registry = trained.home.registry()
    champion = registry.resolve("house_prices@champion")
    parts = rows_of(trained)
    recent = pl.concat([parts["test"].drop("price", "sale_date"), parts["listings"]], how="diagonal")
    assert recent.height >= 300

    def alerts(frame: pl.DataFrame) -> list[Any]:
        app = build(champion, registry=registry, drift_window=200, drift_every=50)
        result = run_app(app, inputs={SOURCE_TOPIC: as_listings(frame)}, broker=broker_with_topics())
        assert len(result.values(PRICED_TOPIC)) == frame.height
        return result.values(ALERTS_TOPIC)

    assert alerts(recent) == []
    shifted = alerts(recent.with_columns((pl.col("sqft_living") * 1.5).cast(pl.Int64)))
    assert shifted, "no alert for sqft_living x 1.5"
    assert any("sqft_living" in str(alert) for alert in shifted), shifted


def test_unusable_listings_are_dead_lettered_and_odd_ones_priced_with_flags(trained: Trained) -> None:
    registry = trained.home.registry()
    good = as_listings(rows_of(trained)["listings"])[0]
    missing = {k: v for k, v in good.items() if k != "sqft_living"}
    odd = {**good, "bedrooms": 40, "zipcode": 98999}  # out of the training range; a zip the table lacks
    result = run_app(build(registry.resolve("house_prices@champion"), registry=registry),
                     inputs={SOURCE_TOPIC: [good, missing, odd]}, broker=broker_with_topics())
    priced = result.values(PRICED_TOPIC)
    assert [r["bedrooms"] for r in priced] == [good["bedrooms"], 40]
    assert priced[0]["data_checks"] == [] and priced[0]["unknown_zipcode"] is False
    assert "range:bedrooms" in priced[1]["data_checks"] and priced[1]["unknown_zipcode"] is True
    # Zip codes are categories: an unseen one is "unseen", not out of a numeric range.
    assert "unseen:zipcode" in priced[1]["data_checks"] and "range:zipcode" not in priced[1]["data_checks"]
    assert priced[1]["zip_median_price_per_sqft"] is None and priced[0]["zip_median_price_per_sqft"] > 0
    assert priced[1]["city"] is None and priced[1]["predicted_price"] > 0
    (dead,) = result.dead_letters
    assert "sqft_living" in dead.error_message and dead.offset == 1


def test_a_new_champion_prices_checks_watches_and_enriches_later_records_without_a_restart(
        trained: Trained, tmp_path: Path) -> None:
    # A home with a copy of the trained home's database (the models' artifacts and lineage name
    # files of the original, only read), so promoting here leaves the session's champion alone.
    # Copied with SQLite's backup API: opening and closing the file by hand (shutil) would drop
    # the POSIX locks this process's open connections to it hold, and their next reads could
    # miss what other processes write (SQLite's "How To Corrupt", section 2.2).
    home = scenario.Home(tmp_path / "home")
    home.path.mkdir()
    with sqlite3.connect(trained.home.path / "headwater.db") as source, \
            sqlite3.connect(home.path / "headwater.db") as copy:
        source.backup(copy)
    source.close()
    copy.close()
    registry = home.registry()
    old = registry.resolve("house_prices@champion")
    listings = as_listings(rows_of(trained)["listings"])

    # The next version: trained on prices x 2, with its own zip statistics (also x 2).
    history = pl.read_parquet(trained.folders["prepared"] / "history.parquet").with_columns(pl.col("price") * 2)
    stats = pl.read_csv(old.lineage["reference_tables"]["zip_price_per_sqft"]).with_columns(
        (pl.col("zip_median_price_per_sqft") * 2).round(2), pl.col("zip_median_price") * 2)
    stats_path = tmp_path / "zip_price_per_sqft_x2.csv"
    stats.write_csv(stats_path)
    doubled = stats_by_zip(stats)

    app = build(old, registry=registry, reload_interval=0.05)
    broker = broker_with_topics()
    producer = broker.producer()
    runner = threading.Thread(target=app.run, args=(broker,), kwargs={"handle_signals": False}, daemon=True)
    runner.start()

    def price(listing: dict[str, Any]) -> dict[str, Any]:
        before = scenario.end_offset(broker, PRICED_TOPIC)
        producer.produce(SOURCE_TOPIC, scenario_json(listing), str(listing["zipcode"]).encode())
        producer.flush()
        deadline = time.monotonic() + 30
        while scenario.end_offset(broker, PRICED_TOPIC) == before:
            assert runner.is_alive() and time.monotonic() < deadline, "the app stopped pricing"
            time.sleep(0.02)
        return scenario.read_json(broker, PRICED_TOPIC, before)[0]  # type: ignore[no-any-return]

    def steps_on(ref: str) -> bool:
        found = quality_metrics(app)
        return bool(found["check"]["model_version"] == ref == found["monitor_drift"]["model_version"])

    try:
        first = price(listings[0])
        assert first["model_version"] == old.ref and steps_on(old.ref)
        assert first["zip_median_price_per_sqft"] == stats_by_zip(stats_table(old).snapshot())[first["zipcode"]]

        lineage = {**old.lineage, "reference_tables": {"zip_price_per_sqft": str(stats_path)}}
        report = training.train_model(history, registry=registry, lineage=lineage, data_paths=[])
        new = registry.get("house_prices", int(report["version"].rpartition(":")[2]))
        registry.promote("house_prices", new.version, who="test", reason="prices doubled", force=True)

        # Each step looks at the alias between batches: within a bounded number of listings all follow.
        seen: list[dict[str, Any]] = []
        for listing in listings[1:]:
            seen.append(price(listing))
            if seen[-1]["model_version"] == new.ref and steps_on(new.ref):
                break
        assert seen[-1]["model_version"] == new.ref and steps_on(new.ref), (seen[-1], quality_metrics(app))
        # Every record carries the zip statistics of the version that priced it, before and after the switch.
        by_version = {old.ref: stats_by_zip(stats_table(old).snapshot()), new.ref: doubled}
        for record in [first, *seen]:
            assert record["zip_median_price_per_sqft"] == by_version[record["model_version"]][record["zipcode"]]
        later = price(listings[0])
        assert later["model_version"] == new.ref
        assert later["zip_median_price_per_sqft"] == doubled[listings[0]["zipcode"]]
        assert later["predicted_price"] > 1.5 * first["predicted_price"]  # the doubled model priced it
        assert steps_on(new.ref) and runner.is_alive()  # the same app, never restarted
    finally:
        app.stop()
        runner.join(30)
    assert not runner.is_alive()
