"""The training-data profile: statistics, edge cases (nulls, NaN, all-null, empty) and valid JSON."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from headwater.ml.profile import PROFILE_VERSION, QUANTILES, profile


def _roundtrip(doc: dict) -> dict:
    # allow_nan=False: a NaN or infinity anywhere would make the stored profile invalid JSON.
    return json.loads(json.dumps(doc, allow_nan=False))


def test_numeric_statistics_match_polars() -> None:
    values = [float(v) for v in range(1, 101)]
    doc = _roundtrip(profile(pl.DataFrame({"x": values})))
    assert doc["profile_version"] == PROFILE_VERSION == 1
    assert doc["row_count"] == 100
    x = doc["columns"]["x"]
    assert x["kind"] == "numeric"
    assert x["dtype"] == "Float64"
    assert (x["count"], x["nulls"], x["nans"], x["infinities"]) == (100, 0, 0, 0)
    assert (x["min"], x["max"], x["mean"], x["median"]) == (1.0, 100.0, 50.5, 50.5)
    assert x["std"] == pytest.approx(pl.Series(values).std())
    assert set(x["quantiles"]) == set(QUANTILES)
    assert x["quantiles"]["p50"] == 50.5
    assert x["quantiles"]["p01"] == pytest.approx(1.99)  # linear interpolation, like NumPy
    assert x["quantiles"]["p99"] == pytest.approx(99.01)


def test_integer_min_max_stay_integers() -> None:
    doc = _roundtrip(profile(pl.DataFrame({"n": [3, 1, 2]})))
    n = doc["columns"]["n"]
    assert n["min"] == 1 and isinstance(n["min"], int)
    assert n["max"] == 3 and isinstance(n["max"], int)
    assert n["mean"] == 2.0
    assert "nans" not in n


def test_nulls_nan_and_infinities_are_counted_apart_and_left_out_of_statistics() -> None:
    frame = pl.DataFrame({"x": [1.0, 3.0, None, float("nan"), float("inf"), float("-inf")]})
    x = _roundtrip(profile(frame))["columns"]["x"]
    assert x["count"] == 5  # NaN and infinities are values, nulls are not
    assert (x["nulls"], x["nans"], x["infinities"]) == (1, 1, 2)
    assert (x["min"], x["max"], x["mean"], x["median"]) == (1.0, 3.0, 2.0, 2.0)


def test_all_null_columns_have_null_statistics() -> None:
    frame = pl.DataFrame(
        {
            "f": pl.Series([None, None], dtype=pl.Float64),
            "s": pl.Series([None, None], dtype=pl.String),
            "untyped": [None, None],
        }
    )
    cols = _roundtrip(profile(frame))["columns"]
    assert cols["f"]["count"] == 0 and cols["f"]["nulls"] == 2
    assert all(cols["f"][stat] is None for stat in ("min", "max", "mean", "std", "median"))
    assert all(v is None for v in cols["f"]["quantiles"].values())
    assert (cols["s"]["distinct"], cols["s"]["top"]) == (0, [])
    assert cols["untyped"] == {"dtype": "Null", "kind": "other", "count": 0, "nulls": 2}


def test_empty_frame() -> None:
    frame = pl.DataFrame(schema={"x": pl.Float64, "s": pl.String, "d": pl.Date})
    doc = _roundtrip(profile(frame))
    assert doc["row_count"] == 0
    assert doc["columns"]["x"]["count"] == 0 and doc["columns"]["x"]["mean"] is None
    assert doc["columns"]["s"]["top"] == []
    assert doc["columns"]["d"]["min"] is None
    assert _roundtrip(profile(pl.DataFrame())) == {"profile_version": 1, "row_count": 0, "columns": {}}


def test_single_value_has_no_standard_deviation() -> None:
    x = _roundtrip(profile(pl.DataFrame({"x": [4.0]})))["columns"]["x"]
    assert x["std"] is None
    assert x["mean"] == 4.0


def test_categories_are_bounded_and_ordered_by_count_then_value() -> None:
    values = ["b"] * 3 + ["a"] * 3 + ["c"] * 2 + [f"rare{i}" for i in range(30)] + [None]
    for dtype in (pl.String, pl.Categorical):
        s = _roundtrip(profile(pl.DataFrame({"s": pl.Series(values, dtype=dtype)}), top_k=4))["columns"]["s"]
        assert s["kind"] == "categorical"
        assert s["distinct"] == 33
        assert s["nulls"] == 1
        assert s["top"] == [["a", 3], ["b", 3], ["c", 2], ["rare0", 1]]


def test_temporal_and_boolean_columns() -> None:
    frame = pl.DataFrame(
        {
            "day": [dt.date(2014, 5, 2), dt.date(2015, 1, 3), None],
            "at": [dt.datetime(2014, 5, 2, 8, tzinfo=dt.UTC), None, dt.datetime(2014, 1, 1, tzinfo=dt.UTC)],
            "flag": [True, False, None],
        }
    )
    cols = _roundtrip(profile(frame))["columns"]
    assert (cols["day"]["min"], cols["day"]["max"], cols["day"]["nulls"]) == ("2014-05-02", "2015-01-03", 1)
    assert cols["at"]["min"] == "2014-01-01T00:00:00+00:00"
    assert cols["flag"] == {"dtype": "Boolean", "kind": "boolean", "count": 2, "nulls": 1, "true": 1, "false": 1}


def test_column_names_with_separators_do_not_collide() -> None:
    frame = pl.DataFrame({"a": [1, 2], "a\x1fmin": [10, 20], "1": [5, 6]})
    cols = profile(frame)["columns"]
    assert (cols["a"]["min"], cols["a\x1fmin"]["min"], cols["1"]["min"]) == (1, 10, 5)
