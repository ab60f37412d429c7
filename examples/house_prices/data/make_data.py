"""Rebuild the small files derived from the data here (run from the repository root; committed outputs).

- ``sample.csv``: 3,000 rows of kc_house_data.csv drawn with a fixed seed, in the file's order,
  for tests that run the whole pipeline in CI time.
- ``zipcodes_king_county.csv``: the zip-code reference table (zip -> city, county, lat/long,
  area codes) for the 70 zip codes of the data, from the PyPI package ``zipcodes`` (MIT; its
  coordinates come from GeoNames, CC BY 4.0), which ships US zip data offline in its wheel.
  Only this script needs it (``pip install zipcodes``); the pipeline reads the CSV.

    .venv/bin/python examples/house_prices/data/make_data.py
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
SAMPLE_ROWS = 3_000
SEED = 20150527  # the date of the last sale


def make_sample() -> None:
    full = pl.read_csv(HERE / "kc_house_data.csv", infer_schema=False)  # text in, text out: values unchanged
    sample = full.with_row_index("_row").sample(SAMPLE_ROWS, seed=SEED).sort("_row").drop("_row")
    sample.write_csv(HERE / "sample.csv")


def make_zipcodes() -> None:
    import zipcodes  # type: ignore[import-not-found]

    codes = pl.read_csv(HERE / "kc_house_data.csv", columns=["zipcode"])["zipcode"].unique().sort()
    rows = []
    for code in codes.to_list():
        (entry,) = zipcodes.matching(str(code))
        rows.append({"zipcode": code, "city": entry["city"], "county": entry["county"], "state": entry["state"],
                     "zip_lat": float(entry["lat"]), "zip_long": float(entry["long"]),
                     "area_codes": " ".join(entry["area_codes"])})
    pl.DataFrame(rows).write_csv(HERE / "zipcodes_king_county.csv")


if __name__ == "__main__":
    make_sample()
    make_zipcodes()
