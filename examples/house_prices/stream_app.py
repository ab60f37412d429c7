"""Stream app ``house_pricing``: new listings in, priced listings out, checked, enriched and watched for drift.

::

    houses (JSON listings, no price)
      -> enrich with the zip-code table                  city, county; live updates from zipcodes.cdc
      -> enrich with the zip statistics of the train split (median price per sqft)
      -> check against the champion's training profile   missing field / wrong type: dead letter;
                                                          out of range, unseen zip, null: flagged
      -> predict with house_prices@champion              predicted_price, model_version
      -> drift monitor (PSI per feature vs the profile)   alerts to houses.alerts
      -> houses.priced

Run it with ``headwater stream run house_prices.stream_app:app`` (``examples/`` on
``PYTHONPATH``), after the ``house_prices`` DAG has registered a champion. ``app`` is a
factory: the champion's profile and reference tables are looked up when the app starts, not
when the module is imported. The model itself follows the alias (a new champion scores the
next batch); the check and drift profile stay those of the champion at start.
"""

from __future__ import annotations

from typing import Any

from house_prices.lake import ZIPCODES

APP = "house_pricing"
SOURCE_TOPIC = "houses"
PRICED_TOPIC = "houses.priced"
ALERTS_TOPIC = "houses.alerts"
ZIP_CHANGELOG = "zipcodes.cdc"
MODEL_REF = "house_prices@champion"
#: What each kind of failed data check does: unusable records go to the dead letters (with the
#: reason); the model can still price the others, and their flags travel with the price.
CHECK_POLICY = {"missing": "dead_letter", "type": "dead_letter", "null": "flag", "range": "flag", "unseen": "flag"}
TOPICS = (SOURCE_TOPIC, PRICED_TOPIC, ALERTS_TOPIC, ZIP_CHANGELOG, f"{APP}.dlq")


def zip_table(changelog: str | None = ZIP_CHANGELOG) -> Any:
    """The zip-code reference table (zip -> city, county...), kept up to date from ``changelog``."""
    import polars as pl

    from headwater.stream.tables import ReferenceTable

    schema = {"zipcode": pl.Int64, "city": pl.String, "county": pl.String, "state": pl.String,
              "zip_lat": pl.Float64, "zip_long": pl.Float64, "area_codes": pl.String}
    return ReferenceTable("zipcodes", ZIPCODES, key="zipcode", schema=schema, changelog=changelog)


def stats_table(champion: Any) -> Any:
    """Median price per sqft per zip of the champion's train split (the file its lineage names)."""
    import polars as pl

    from headwater.errors import UserError
    from headwater.stream.tables import ReferenceTable

    path = ((champion.lineage or {}).get("reference_tables") or {}).get("zip_price_per_sqft")
    if not path:
        raise UserError(f"model {champion.ref} does not name its zip statistics table",
                        hint="train it with the house_prices DAG (headwater dags test house_prices)")
    schema = {"zipcode": pl.Int64, "zip_median_price": pl.Float64, "zip_median_price_per_sqft": pl.Float64,
              "zip_sales": pl.Int64}
    return ReferenceTable("zip_stats", path, key="zipcode", schema=schema)


def add_price_per_sqft(frame: Any) -> Any:
    """Add the predicted price per sqft, to read beside the zip's median (the price itself is kept exact)."""
    import polars as pl

    return frame.with_columns(predicted_price_per_sqft=(pl.col("predicted_price") / pl.col("sqft_living")).round(2))


def build(champion: Any, *, registry: Any = None, drift_window: int = 1000, drift_every: int = 500,
          max_batch_records: int = 2_000) -> Any:
    """The app for ``champion`` (a ``ModelVersion``); ``registry`` defaults to the headwater home's."""
    from headwater.stream import Json, StreamApp

    app = StreamApp(APP, max_batch_records=max_batch_records)
    (
        app.stream(SOURCE_TOPIC, value=Json())
        # Enrichment first: a batch step first lets the runtime decode the JSON straight into a
        # frame (measured: 0.30 s -> 0.11 s per 10k listings); the check still sees every input field.
        .enrich(zip_table(), on="zipcode", columns=["city", "county"], missing="flag", flag="unknown_zipcode")
        .enrich(stats_table(champion), on="zipcode", columns=["zip_median_price_per_sqft"])
        .check(champion, policy=CHECK_POLICY, column="data_checks")
        .predict(MODEL_REF, output="predicted_price", registry=registry)
        .map_batch(add_price_per_sqft)
        .monitor_drift(champion, alerts_topic=ALERTS_TOPIC, window=drift_window, every=drift_every)
        .to(PRICED_TOPIC)
    )
    return app


def app() -> Any:
    """The factory ``headwater stream run house_prices.stream_app:app`` calls: the app for today's champion."""
    from headwater.ml import open_registry
    from headwater.settings import Settings

    registry = open_registry(Settings.from_env())
    return build(registry.resolve(MODEL_REF), registry=registry)
