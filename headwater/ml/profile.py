"""A profile of a data frame: the summary stored with a model of the data it was trained on.

Checks and drift detection (a later issue) compare new data against this profile, so its
format is versioned and documented here. ``profile(frame)`` returns plain JSON data::

    {
      "profile_version": 1,
      "row_count": 1000,
      "columns": {
        "price": {
          "dtype": "Float64", "kind": "numeric",
          "count": 990,          # non-null values (NaN and infinities included)
          "nulls": 10,
          "nans": 0, "infinities": 0,          # float columns only
          "min": ..., "max": ..., "mean": ..., "std": ..., "median": ...,
          "quantiles": {"p01": ..., "p05": ..., "p25": ..., "p50": ..., "p75": ..., "p95": ..., "p99": ...},
          "cdf": {"p01": 0.0101, ..., "p99": 0.99}   # share of finite values <= each quantile's value
        },
        "bedrooms": {
          "dtype": "Int64", "kind": "numeric", ...,  # as above, and for integer columns:
          "distinct": 12,
          "categories": [[0, 3], [1, 41], ...]    # every value with its count, by value (distinct <= limit)
        },
        "zipcode": {
          "dtype": "String", "kind": "categorical", "count": 1000, "nulls": 0,
          "distinct": 70,                      # distinct non-null values
          "top": [["98103", 41], ["98052", 39], ...],  # at most ``top_k``, by count then value
          "categories": [["98001", 12], ...]   # every value with its count, by value (distinct <= limit)
        },
        "sold_on": {"dtype": "Date", "kind": "temporal", "count": ..., "nulls": ..., "min": "2014-05-02", "max": ...},
        "is_new": {"dtype": "Boolean", "kind": "boolean", "count": ..., "nulls": ..., "true": 12, "false": 988}
      }
    }

Rules that make the numbers comparable and the document valid JSON:

- Numeric statistics are over finite values only: NaN and +/-inf are counted apart (``nans``,
  ``infinities``) and left out of min, max, mean, std, median and quantiles.
- A statistic with no values to compute it from (empty frame, all-null column, ``std`` of one
  value) is ``null``.
- ``std`` is the sample standard deviation (ddof=1); quantiles interpolate linearly, like NumPy.
- Integer ``min``/``max`` stay integers; every other numeric statistic is a float.
- ``cdf`` (added in place, like ``categories`` below) is, for each quantile, the share of the
  finite values that are <= its value: the exact training mass of drift bins whose edges are
  the quantiles, even when values tie (a column that is 60% zeros has ``p01`` to ``p50`` at 0
  and ``cdf["p50"] == 0.6``, where the quantile level alone would say 0.5).
- ``categories`` (added in place, the format stays version 1: readers that do not know it
  ignore it) is the full vocabulary with counts of a string/categorical or integer column
  whose distinct count is at most ``categories_limit``, or of any column named in
  ``categorical=`` (those entries also get ``"categorical": true``: integer-coded categories
  such as zip codes, which data checks then test for unseen values rather than ranges).
  String categories are strings; integer categories stay integers.
- Temporal ``min``/``max`` are ISO 8601 strings. Other kinds (lists, structs, binary) carry only
  ``dtype``, ``kind``, ``count`` and ``nulls``.

Cost: one ``select`` over every column for the statistics, one over the numeric columns for
``cdf``, plus one ``value_counts`` per
string/categorical column for the top categories and one per column whose full
``categories`` are kept.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

import polars as pl

from headwater.errors import UserError

PROFILE_VERSION = 1

#: Columns with at most this many distinct values keep their full vocabulary (``categories``).
CATEGORIES_LIMIT = 100

#: Quantiles reported for numeric columns, by their key in the profile.
QUANTILES: dict[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}

_NUMERIC_STATS = ("min", "max", "mean", "std", "median")


def _kind(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_numeric():
        return "numeric"
    if dtype.is_temporal():
        return "temporal"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "categorical"
    return "other"


def _key(column_index: int, stat: str) -> str:
    # Positional keys: column names may contain any character, and two stats must never collide.
    return f"{column_index}\x1f{stat}"


def _finite(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column with NaN and infinities replaced by null, so statistics see finite values only."""
    col = pl.col(name)
    if dtype.is_float():
        return pl.when(col.is_finite()).then(col).otherwise(None)
    if dtype.is_decimal():
        return col.cast(pl.Float64)
    return col


def _stat_exprs(index: int, name: str, dtype: pl.DataType, kind: str) -> list[pl.Expr]:
    col = pl.col(name)
    exprs = [col.count().alias(_key(index, "count")), col.null_count().alias(_key(index, "nulls"))]
    if kind == "numeric":
        finite = _finite(name, dtype)
        if dtype.is_float():
            exprs += [
                col.is_nan().sum().alias(_key(index, "nans")),
                col.is_infinite().sum().alias(_key(index, "infinities")),
            ]
        as_float = finite.cast(pl.Float64)
        exprs += [
            finite.min().alias(_key(index, "min")),
            finite.max().alias(_key(index, "max")),
            as_float.mean().alias(_key(index, "mean")),
            as_float.std().alias(_key(index, "std")),
            as_float.median().alias(_key(index, "median")),
        ]
        exprs += [
            as_float.quantile(q, interpolation="linear").alias(_key(index, label)) for label, q in QUANTILES.items()
        ]
        if dtype.is_integer():
            exprs.append(col.drop_nulls().n_unique().alias(_key(index, "distinct")))
    elif kind == "temporal":
        exprs += [col.min().alias(_key(index, "min")), col.max().alias(_key(index, "max"))]
    elif kind == "categorical":
        exprs.append(col.drop_nulls().n_unique().alias(_key(index, "distinct")))
    elif kind == "boolean":
        exprs += [col.sum().alias(_key(index, "true")), (~col).sum().alias(_key(index, "false"))]
    return exprs


def _json_number(value: Any) -> Any:
    """A JSON-safe scalar: finite floats and ints as they are, anything else non-finite as null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)  # Decimal and other numeric scalars


def _top(frame: pl.DataFrame, name: str, top_k: int) -> list[list[Any]]:
    values = frame.get_column(name).drop_nulls().cast(pl.String)
    if values.is_empty():
        return []
    counts = values.value_counts(name="count").sort(["count", name], descending=[True, False]).head(top_k)
    return [[value, int(count)] for value, count in counts.iter_rows()]


def _cdf(
    frame: pl.DataFrame, schema: Any, kinds: dict[str, str], row: dict[str, Any]
) -> dict[str, float | None]:
    """Per numeric column and quantile (positional keys), the share of finite values <= the quantile's value."""
    exprs: list[pl.Expr] = []
    for index, (name, dtype) in enumerate(schema.items()):
        if kinds[name] != "numeric":
            continue
        finite = _finite(name, dtype).cast(pl.Float64)
        for label in QUANTILES:
            edge = row[_key(index, label)]
            if edge is not None:
                exprs.append(((finite <= float(edge)).sum() / finite.count()).alias(_key(index, label)))
    if not exprs:
        return {}
    return {key: _json_number(value) for key, value in frame.select(exprs).row(0, named=True).items()}


def _categories(frame: pl.DataFrame, name: str) -> list[list[Any]]:
    """Every non-null value with its count, by value (integers stay integers, the rest become strings)."""
    values = frame.get_column(name).drop_nulls()
    if not values.dtype.is_integer():
        values = values.cast(pl.String)
    if values.is_empty():
        return []
    counts = values.value_counts(name="count").sort(name)
    return [[_json_number(value) if isinstance(value, int) else value, int(count)]
            for value, count in counts.iter_rows()]


def profile(
    frame: pl.DataFrame,
    *,
    top_k: int = 20,
    categories_limit: int = CATEGORIES_LIMIT,
    categorical: Iterable[str] = (),
) -> dict[str, Any]:
    """Summarise every column of ``frame`` into a JSON-serialisable profile (format above).

    ``top_k`` bounds the number of top categories kept per string/categorical column.
    ``categories_limit``: string and integer columns with at most this many distinct values
    keep their full vocabulary with counts (``categories``), which data checks use to spot
    unseen values and drift checks to compare distributions exactly. ``categorical`` names
    columns to treat as categories whatever their type and count (zip codes stored as
    integers): they always keep ``categories`` and are marked ``"categorical": true``.
    """
    forced = set(categorical)
    unknown = sorted(forced - set(frame.columns))
    if unknown:
        raise UserError(f"profile(categorical=...) names columns the frame does not have: {unknown}",
                        hint=f"pick among {frame.columns}")
    schema = frame.schema
    kinds = {name: _kind(dtype) for name, dtype in schema.items()}
    exprs: list[pl.Expr] = []
    for index, (name, dtype) in enumerate(schema.items()):
        exprs += _stat_exprs(index, name, dtype, kinds[name])
    row = frame.select(exprs).row(0, named=True) if exprs else {}
    cdf = _cdf(frame, schema, kinds, row)

    columns: dict[str, dict[str, Any]] = {}
    for index, (name, dtype) in enumerate(schema.items()):
        kind = kinds[name]
        entry: dict[str, Any] = {
            "dtype": str(dtype),
            "kind": kind,
            "count": int(row[_key(index, "count")]),
            "nulls": int(row[_key(index, "nulls")]),
        }
        if kind == "numeric":
            if dtype.is_float():
                entry["nans"] = int(row[_key(index, "nans")])
                entry["infinities"] = int(row[_key(index, "infinities")])
            for stat in _NUMERIC_STATS:
                value = row[_key(index, stat)]
                # min/max keep the column's type; the rest were computed as floats.
                entry[stat] = _json_number(value if stat in ("min", "max") or value is None else float(value))
            entry["quantiles"] = {label: _json_number(row[_key(index, label)]) for label in QUANTILES}
            entry["cdf"] = {label: cdf.get(_key(index, label)) for label in QUANTILES}
            if dtype.is_integer():
                entry["distinct"] = int(row[_key(index, "distinct")])
                if entry["distinct"] <= categories_limit or name in forced:
                    entry["categories"] = _categories(frame, name)
        elif kind == "temporal":
            entry["min"] = _json_number(row[_key(index, "min")])
            entry["max"] = _json_number(row[_key(index, "max")])
        elif kind == "categorical":
            entry["distinct"] = int(row[_key(index, "distinct")])
            entry["top"] = _top(frame, name, top_k)
            if entry["distinct"] <= categories_limit or name in forced:
                entry["categories"] = _categories(frame, name)
        elif kind == "boolean":
            entry["true"] = int(row[_key(index, "true")] or 0)
            entry["false"] = int(row[_key(index, "false")] or 0)
        if name in forced:
            if "categories" not in entry:
                entry["categories"] = _categories(frame, name)
            entry["categorical"] = True
        columns[name] = entry
    return {"profile_version": PROFILE_VERSION, "row_count": frame.height, "columns": columns}
