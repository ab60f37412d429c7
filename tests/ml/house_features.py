"""A feature set for King County house prices, as a user module would write it (used by the tests)."""

from __future__ import annotations

import polars as pl

from headwater.ml.features import FeatureSet
from headwater.ml.transforms import (
    Feature,
    Impute,
    OneHot,
    QuantileBucket,
    RobustScale,
    StandardScale,
    clip,
    date_part,
    parse_datetime,
    ratio,
)

INPUTS = {
    "date": pl.String,  # "20140625T000000"
    "bedrooms": pl.Int64,
    "bathrooms": pl.Float64,
    "sqft_living": pl.Int64,
    "sqft_lot": pl.Int64,
    "floors": pl.Float64,
    "waterfront": pl.Int64,
    "condition": pl.Int64,
    "grade": pl.Int64,
    "yr_built": pl.Int64,
    "yr_renovated": pl.Int64,
    "zipcode": pl.Int64,
    "lat": pl.Float64,
    "long": pl.Float64,
}


def house_features() -> FeatureSet:
    """Features for the house-price model; the log-price target is handled outside."""
    sale_year = date_part(pl.col("sale_date"), "year")
    return FeatureSet(
        "house_prices",
        INPUTS,
        [
            Feature("living_per_lot", ratio("sqft_living", "sqft_lot")),
            Feature("log_sqft_living", pl.col("sqft_living").cast(pl.Float64).log1p()),
            Feature("bedrooms", clip("bedrooms", 0, 10)),
            Impute("bathrooms", "median"),
            Feature("floors", pl.col("floors")),
            Feature("waterfront", pl.col("waterfront").fill_null(0)),
            Feature("sale_year", sale_year),
            Feature("sale_month", date_part(pl.col("sale_date"), "month")),
            Feature("age", sale_year - pl.col("yr_built").cast(pl.Int32)),
            Feature("renovated", (pl.col("yr_renovated") != 0).fill_null(False)),
            Feature("grade", pl.col("grade")),
            StandardScale("lat"),
            RobustScale("long"),
            QuantileBucket("condition", 3),
            OneHot("zipcode", max_categories=20),
        ],
        derived={"sale_date": parse_datetime("date")},  # parsed once for year, month and age
        required=["sqft_living", "sqft_lot"],
    )


def synthetic_houses(n: int, seed: int = 0) -> pl.DataFrame:
    """A frame shaped like King County's kc_house_data.csv (same columns and value ranges)."""
    import random

    rng = random.Random(seed)
    zips = [98001 + i * 3 for i in range(30)]
    rows = []
    for _ in range(n):
        built = rng.randint(1900, 2014)
        sqft = rng.randint(400, 6000)
        rows.append(
            {
                "date": f"{rng.choice([2014, 2015])}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}T000000",
                "price": float(rng.randint(80_000, 3_000_000)),
                "bedrooms": rng.choice([0, 1, 2, 3, 3, 4, 4, 5, 6, 33]),
                "bathrooms": rng.choice([0.5, 1.0, 1.75, 2.25, 2.5, 3.0, None]),
                "sqft_living": sqft,
                "sqft_lot": rng.randint(500, 50_000),
                "floors": rng.choice([1.0, 1.5, 2.0, 3.0]),
                "waterfront": rng.choice([0] * 20 + [1]),
                "condition": rng.randint(1, 5),
                "grade": rng.randint(3, 13),
                "yr_built": built,
                "yr_renovated": rng.choice([0] * 10 + [rng.randint(built, 2015)]),
                "zipcode": rng.choice(zips),
                "lat": rng.uniform(47.15, 47.78),
                "long": rng.uniform(-122.52, -121.31),
            }
        )
    return pl.DataFrame(rows)
