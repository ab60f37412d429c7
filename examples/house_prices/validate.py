"""Validation of the ingested sales: types, nulls, ranges, consistency and duplicates; bad rows quarantined.

Every rule gives each row a reason or nothing; a row with any reason goes to
``quarantine.csv`` with all of them (``reason`` column), the others to ``sales.parquet``. The
data's known oddities, and what this pipeline decided:

- **33 bedrooms** (one sale, 1,620 sqft, 1.75 bathrooms): a typing error for 3; quarantined by
  ``bedrooms`` > 15 rather than corrected, since nobody can confirm the fix.
- **0 bathrooms** (10 sales): a sold house without a bathroom is a recording error; quarantined.
- **0 bedrooms** with bathrooms (studios and lots with a cabin): plausible, kept and counted.
- **yr_renovated = 0** (about 20,700 sales): the data's way to say "never renovated"; kept as is
  and counted: the features read it as "not renovated" and age since the build year.
- **built or renovated the year after the sale** (18 sales of 2014 with yr_built or
  yr_renovated 2015): houses sold before completion, kept; a year later than that is an error.
- **the same house sold twice** (the same ``id`` on different dates): separate sales, kept;
  the same ``id`` on the same date is a duplicate, and all but the first are quarantined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Columns that may never be null (every column of the source is, in the real data).
REQUIRED = ("id", "date", "price", "bedrooms", "bathrooms", "sqft_living", "sqft_lot", "floors", "waterfront",
            "view", "condition", "grade", "sqft_above", "sqft_basement", "yr_built", "yr_renovated", "zipcode",
            "lat", "long", "sqft_living15", "sqft_lot15")
#: King County's bounding box, with a margin.
LAT = (47.0, 47.9)
LONG = (-122.6, -121.0)
MAX_BEDROOMS = 15


def _rules() -> list[tuple[str, Any]]:
    """(code, expression giving the reason text for a bad row, null for a good one), in report order."""
    import polars as pl

    def out_of(col: str, low: float, high: float) -> Any:
        c = pl.col(col)
        return pl.when((c < low) | (c > high)).then(pl.format(f"{col}={{}} outside [{low:g}, {high:g}]", c))

    sale_year = pl.col("sale_date").dt.year()
    renovated = pl.col("yr_renovated")
    nulls = [pl.when(pl.col(c).is_null()).then(pl.lit(c)) for c in REQUIRED]
    return [
        ("type", pl.when(pl.col("_parse_errors").list.len() > 0)
         .then(pl.format("unparseable {}", pl.col("_parse_errors").list.join(", ")))),
        ("null", pl.concat_list(nulls).list.drop_nulls().pipe(
            lambda missing: pl.when(missing.list.len() > 0).then(pl.format("null {}", missing.list.join(", "))))),
        ("price", pl.when(pl.col("price") <= 0).then(pl.format("price={} <= 0", pl.col("price")))),
        ("bedrooms", pl.when(pl.col("bedrooms") > MAX_BEDROOMS)
         .then(pl.format(f"bedrooms={{}} > {MAX_BEDROOMS} (for {{}} sqft)", "bedrooms", "sqft_living"))),
        ("bathrooms", pl.when(pl.col("bathrooms") <= 0).then(pl.format("bathrooms={}: a sold house has one",
                                                                       pl.col("bathrooms")))),
        ("sqft", pl.when((pl.col("sqft_living") <= 0) | (pl.col("sqft_lot") <= 0))
         .then(pl.format("sqft_living={} / sqft_lot={} not positive", pl.col("sqft_living"), pl.col("sqft_lot")))),
        ("consistency", pl.when(pl.col("sqft_above") + pl.col("sqft_basement") != pl.col("sqft_living"))
         .then(pl.format("sqft_above {} + sqft_basement {} != sqft_living {}", pl.col("sqft_above"),
                         pl.col("sqft_basement"), pl.col("sqft_living")))),
        ("floors", out_of("floors", 1, 3.5)),
        ("waterfront", out_of("waterfront", 0, 1)),
        ("view", out_of("view", 0, 4)),
        ("condition", out_of("condition", 1, 5)),
        ("grade", out_of("grade", 1, 13)),
        ("yr_built", pl.when((pl.col("yr_built") < 1800) | (pl.col("yr_built") > sale_year + 1))
         .then(pl.format("yr_built={} not in [1800, year of sale + 1]", pl.col("yr_built")))),
        ("yr_renovated", pl.when((renovated != 0) & ((renovated < pl.col("yr_built")) | (renovated > sale_year + 1)))
         .then(pl.format("yr_renovated={} neither 0 (never) nor in [yr_built, year of sale + 1]", renovated))),
        ("zipcode", out_of("zipcode", 98000, 98299)),
        ("location", pl.when((pl.col("lat") < LAT[0]) | (pl.col("lat") > LAT[1]) | (pl.col("long") < LONG[0])
                             | (pl.col("long") > LONG[1]))
         .then(pl.format("lat/long {}, {} outside King County", pl.col("lat"), pl.col("long")))),
        ("duplicate", pl.when(pl.struct("id", "date").is_duplicated() & ~pl.struct("id", "date").is_first_distinct())
         .then(pl.format("duplicate of an earlier row (id {} sold on {})", pl.col("id"), pl.col("date")))),
    ]


def validate(raw: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Split the ingested rows into (clean, quarantined with ``reason``, report with counts).

    Rows keep the source order; the report counts rows per rule (a row may break several),
    the quarantined total, and the oddities kept (see the module docstring).
    """
    import polars as pl

    rules = _rules()
    reasons = raw.select(
        *(expr.alias(code) for code, expr in rules)
    )
    per_rule = {code: int(reasons[code].is_not_null().sum()) for code, _ in rules}
    joined = reasons.select(pl.concat_list(pl.all()).list.drop_nulls().list.join("; ").alias("reason"))["reason"]
    bad = joined.str.len_chars() > 0
    clean = raw.filter(~bad).drop("_parse_errors")
    quarantined = raw.filter(bad).drop("_parse_errors", "sale_month").with_columns(reason=joined.filter(bad))
    ids = clean["id"]
    report = {
        "rows": raw.height,
        "clean": clean.height,
        "quarantined": quarantined.height,
        "violations": {code: n for code, n in per_rule.items() if n},
        "kept_oddities": {
            "yr_renovated_0_never_renovated": int((clean["yr_renovated"] == 0).sum()),
            "bedrooms_0_with_a_bathroom": int((clean["bedrooms"] == 0).sum()),
            "houses_sold_more_than_once": int(ids.filter(ids.is_duplicated()).n_unique()),
        },
    }
    return clean, quarantined, report


def write_outputs(clean: Any, quarantined: Any, report: dict[str, Any], folder: Path) -> None:
    """``sales.parquet``, ``quarantine.csv`` (every column plus ``reason``) and ``validation.json`` in ``folder``."""
    import json

    clean.write_parquet(folder / "sales.parquet")
    quarantined.with_columns(quarantined["sale_date"].cast(str)).write_csv(folder / "quarantine.csv")
    (folder / "validation.json").write_text(json.dumps(report, indent=2, sort_keys=True))
