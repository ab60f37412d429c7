"""The house-price features: one definition for training (the DAG), the stream app and batch scoring.

The model records ``house_prices.features.house_features`` in its lineage, so whatever scores
it later (``Stream.predict("house_prices@champion")``, ``headwater models score``) rebuilds the
same features from their stored state without being told where they live. Keep this module
importable (``examples/`` on ``PYTHONPATH``) and free of work at import time.
"""

from __future__ import annotations

from typing import Any

#: Raw listing fields the model reads, with their types. ``price`` is not one of them (the
#: target), nor ``id`` (an identifier) or ``sqft_above`` (always sqft_living - sqft_basement).
INPUTS: dict[str, str] = {
    "date": "String",  # "20140625T000000": the sale (or listing) date
    "bedrooms": "Int64",
    "bathrooms": "Float64",
    "sqft_living": "Int64",
    "sqft_lot": "Int64",
    "floors": "Float64",
    "waterfront": "Int64",
    "view": "Int64",
    "condition": "Int64",
    "grade": "Int64",
    "sqft_basement": "Int64",
    "yr_built": "Int64",
    "yr_renovated": "Int64",  # 0 = never renovated (the data's convention, kept)
    "zipcode": "Int64",
    "lat": "Float64",
    "long": "Float64",
    "sqft_living15": "Int64",
    "sqft_lot15": "Int64",
}


def house_features() -> Any:
    """The ``FeatureSet`` of the house-price model (a function, so importing this module costs nothing)."""
    import polars as pl

    from headwater.ml import Feature, FeatureSet, FrequencyEncode, Impute, date_part, parse_datetime, ratio

    inputs = {name: getattr(pl, dtype) for name, dtype in INPUTS.items()}
    sale_year = date_part(pl.col("sale_date"), "year")
    renovated = pl.col("yr_renovated") > 0
    return FeatureSet(
        "house_prices",
        inputs,
        [
            Feature("log_sqft_living", pl.col("sqft_living").cast(pl.Float64).log1p()),
            Feature("log_sqft_lot", pl.col("sqft_lot").cast(pl.Float64).log1p()),
            Feature("living_per_lot", ratio("sqft_living", "sqft_lot")),
            Feature("living_vs_neighbours", ratio("sqft_living", "sqft_living15")),
            Feature("log_sqft_lot15", pl.col("sqft_lot15").cast(pl.Float64).log1p()),
            Feature("sqft_living15", pl.col("sqft_living15")),
            Feature("sqft_basement", pl.col("sqft_basement")),
            Feature("bedrooms", pl.col("bedrooms")),
            Impute("bathrooms", "median"),
            Feature("floors", pl.col("floors")),
            Feature("waterfront", pl.col("waterfront")),
            Feature("view", pl.col("view")),
            Feature("condition", pl.col("condition")),
            Feature("grade", pl.col("grade")),
            Feature("age", sale_year - pl.col("yr_built").cast(pl.Int32)),
            # yr_renovated 0 means "never": the age of the house since its last renovation or build.
            Feature("years_since_renovation",
                    sale_year - pl.when(renovated).then(pl.col("yr_renovated")).otherwise(pl.col("yr_built"))
                    .cast(pl.Int32)),
            Feature("renovated", renovated),
            Feature("sale_month", date_part(pl.col("sale_date"), "month")),
            Feature("lat", pl.col("lat")),
            Feature("long", pl.col("long")),
            # The zip code as a number is meaningless; LightGBM sees it as how common it is plus lat/long.
            FrequencyEncode("zipcode"),
        ],
        derived={"sale_date": parse_datetime("date")},
        required=["date", "sqft_living", "sqft_lot", "zipcode", "lat", "long", "grade"],
    )
