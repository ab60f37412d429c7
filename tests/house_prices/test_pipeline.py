"""The scenario end to end on the sample through the real CLI: the DAG, its rerun, the stream app as processes."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
from house_prices import scenario, training
from house_prices.stream_app import SOURCE_TOPIC

from .conftest import SAMPLE, Trained

pytestmark = pytest.mark.slow


def test_the_dag_loads_validates_holds_out_trains_and_promotes(trained: Trained) -> None:
    out = trained.first_run.stdout
    for name in ("ingest", "validate", "prepare", "train"):
        assert re.search(rf"{name}\s+success", out), out
    folders = trained.folders
    raw = json.loads((folders["raw"] / "_SUCCESS").read_text())
    clean = json.loads((folders["clean"] / "_SUCCESS").read_text())
    prepared = json.loads((folders["prepared"] / "_SUCCESS").read_text())
    sample_rows = pl.read_csv(SAMPLE).height
    # Every row is accounted for: loaded, then clean or quarantined, then history or new listing.
    assert raw["rows"] == sample_rows
    assert sum(raw["partitions"].values()) == sample_rows and len(raw["partitions"]) == 13
    assert clean["clean"] + clean["quarantined"] == sample_rows
    assert prepared["history_rows"] + prepared["listings"] == clean["clean"]
    assert pl.read_csv(folders["clean"] / "quarantine.csv").height == clean["quarantined"]
    listings = pl.read_parquet(folders["prepared"] / "listings.parquet")
    assert "price" not in listings.columns
    history = pl.read_parquet(folders["prepared"] / "history.parquet")
    # The new listings are the most recent sales: all sold after everything the model learns from.
    assert history["sale_date"].max() < listings["date"].str.to_date("%Y%m%dT%H%M%S").min()

    registry = trained.home.registry()
    champion = registry.resolve("house_prices@champion")
    assert champion.lineage["dag_id"] == "house_prices" and champion.lineage["task_id"] == "train"
    assert champion.lineage["run_id"].startswith("test__")
    assert folders["prepared"].name == f"source={champion.lineage['source_digest']}"  # which load it learned from
    assert champion.lineage["feature_definition"]["module"] == "house_prices.features"
    assert champion.lineage["split"]["method"] == "time"
    assert champion.profile  # the training profile the stream checks against
    model, baseline = champion.metrics["test"], champion.metrics["baseline_zip_median"]["test"]
    assert model["r2"] > baseline["r2"] + 0.2 and model["rmse"] < baseline["rmse"]
    assert "no champion yet" in champion.status_reason


def test_a_rerun_skips_every_stage_and_trains_nothing_and_force_is_judged(trained: Trained) -> None:
    registry = trained.home.registry()
    versions = len(registry.list_versions(training.MODEL))

    again = trained.dags_test()
    assert again.returncode == 0, again.stdout + again.stderr
    for name in ("ingest", "validate", "prepare"):
        assert re.search(rf"{name}\s+success\s+1\s+\S+ ms\s+already complete", again.stdout), again.stdout
    assert len(registry.list_versions(training.MODEL)) == versions
    run_id = re.search(r"run\s+(test__\S+)", again.stdout)
    assert run_id, again.stdout
    log = trained.home.cli("tasks", "logs", "house_prices", "train", run_id.group(1)).stdout
    assert "trained on exactly this data already" in log

    forced = trained.dags_test(force_train=True)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    latest = registry.list_versions(training.MODEL)[-1]
    assert latest.version == versions + 1
    # The same data and code give the same model: not 1% better than the champion, so it stays out.
    assert latest.status == "rejected"
    assert "needs +1.00%" in latest.status_reason and "on the same" in latest.status_reason
    assert registry.resolve("house_prices@champion").version == versions


def test_stream_app_and_replay_as_processes_price_every_listing(trained: Trained) -> None:
    home = trained.home
    broker = home.broker()
    scenario.ensure_topics(broker)
    since = scenario.Offsets.now(broker)
    listings = trained.folders["prepared"] / "listings.parquet"
    expected = pl.read_parquet(listings).height

    app = home.start("stream", "run", "house_prices.stream_app:app", log=home.path / "app.log")
    try:
        home.cli("stream", "replay", str(listings), "--topic", SOURCE_TOPIC, "--key", "zipcode", "--rate", "2000/s")
        done = scenario.wait_until_scored(broker, since, expected, app=app, timeout=120)
    finally:
        code = scenario.stop(app)
    assert done == expected, (home.path / "app.log").read_text()
    assert code == 0, (home.path / "app.log").read_text()
    priced = scenario.read_json(broker, "houses.priced", since.priced)
    assert sorted(r["id"] for r in priced) == sorted(pl.read_parquet(listings)["id"].to_list())
    champion = home.registry().resolve("house_prices@champion")
    for record in priced:
        assert record["model_version"] == champion.ref
        assert record["predicted_price"] > 0 and record["city"] and record["county"] == "King County"
        assert isinstance(record["data_checks"], list)
        assert record["zip_median_price_per_sqft"] is None or record["zip_median_price_per_sqft"] > 0


def test_retraining_waits_for_its_week_new_data_or_force(trained: Trained) -> None:
    registry = trained.home.registry()
    trained_on = registry.resolve("house_prices@champion").lineage["training_frame_hash"]
    decide = training.training_decision
    assert "exactly this data" in str(decide(registry, trained_on, week=4, every_weeks=2, force=False))
    assert decide(registry, trained_on, week=4, every_weeks=2, force=True) is None
    # New data: trained on even weeks only ("every other week"), or every week with 1.
    assert "not a retraining week (week 5" in str(decide(registry, "sha256:new", week=5, every_weeks=2, force=False))
    assert decide(registry, "sha256:new", week=6, every_weeks=2, force=False) is None
    assert decide(registry, "sha256:new", week=5, every_weeks=1, force=False) is None
