"""Ingest and validation on injected bad rows: each one quarantined with its reason, no good row lost."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from house_prices import lake
from house_prices.validate import validate, write_outputs

from .conftest import SAMPLE


def with_bad_rows(tmp_path: Path) -> tuple[Path, int, dict[str, str]]:
    """The sample plus one bad row per rule, as text; returns the file, the good-row count and id -> rule."""
    text = pl.read_csv(SAMPLE, infer_schema=False)
    base = text.row(0, named=True)
    changes = {
        "900000001": ("bedrooms", {"bedrooms": "33"}),
        "900000002": ("bathrooms", {"bathrooms": "0"}),
        "900000003": ("type", {"sqft_living": "two thousand"}),
        "900000004": ("null", {"price": None}),
        "900000005": ("location", {"lat": "40.7", "long": "-74.0"}),
        "900000006": ("yr_renovated", {"yr_built": "1990", "yr_renovated": "1950"}),
        "900000007": ("consistency", {"sqft_above": "10"}),
        "900000008": ("type", {"date": "yesterday"}),
        "900000009": ("zipcode", {"zipcode": "10001"}),
    }
    rows = [{**base, "id": row_id, **change} for row_id, (_, change) in changes.items()]
    duplicate = text.row(1, named=True)  # the same sale twice: the second copy is quarantined
    bad = pl.DataFrame([*rows, duplicate], schema=text.schema)
    path = tmp_path / "with_bad_rows.csv"
    pl.concat([text, bad]).write_csv(path)
    expected = {row_id: rule for row_id, (rule, _) in changes.items()} | {str(duplicate["id"]): "duplicate"}
    return path, text.height, expected


def test_injected_bad_rows_are_quarantined_with_their_reason_and_nothing_is_lost(tmp_path: Path) -> None:
    source, good, expected = with_bad_rows(tmp_path)
    manifest = lake.ingest(source, tmp_path / "raw" / "source=x")
    assert manifest["rows"] == good + len(expected)
    assert manifest["rows_with_parse_errors"] == 2  # "two thousand" and "yesterday"

    clean, quarantined, report = validate(lake.read_raw(tmp_path / "raw" / "source=x"))
    assert clean.height + quarantined.height == manifest["rows"]
    assert report["quarantined"] == quarantined.height
    reasons = dict(zip(quarantined["id"].cast(pl.String).to_list(), quarantined["reason"].to_list(), strict=True))
    for row_id, rule in expected.items():
        assert row_id in reasons, f"{rule} row {row_id} was not quarantined"
    assert "bedrooms=33 > 15" in reasons["900000001"]
    assert "bathrooms=0.0" in reasons["900000002"]
    assert "unparseable sqft_living=two thousand" in reasons["900000003"]
    assert "null price" in reasons["900000004"]
    assert "outside King County" in reasons["900000005"]
    assert "yr_renovated=1950" in reasons["900000006"]
    assert "sqft_above 10 + sqft_basement" in reasons["900000007"]
    assert "unparseable date=yesterday" in reasons["900000008"]
    assert "zipcode=10001 outside" in reasons["900000009"]
    assert "duplicate of an earlier row" in next(r for i, r in reasons.items() if expected.get(i) == "duplicate")
    # The sample itself is clean but for its real oddities, which are counted.
    assert report["violations"]["type"] == 2
    assert report["kept_oddities"]["yr_renovated_0_never_renovated"] > 0

    write_outputs(clean, quarantined, report, tmp_path)
    written = pl.read_csv(tmp_path / "quarantine.csv")
    assert written.height == quarantined.height and "reason" in written.columns
    assert json.loads((tmp_path / "validation.json").read_text()) == report


def test_a_file_without_the_expected_columns_is_refused_with_a_hint(tmp_path: Path) -> None:
    source = tmp_path / "other.csv"
    source.write_text("a,b\n1,2\n")
    with pytest.raises(lake.IngestError) as caught:
        lake.ingest(source, tmp_path / "raw")
    assert "lacks the columns" in str(caught.value) and caught.value.hint
    assert not (tmp_path / "raw").exists()


def test_a_missing_source_is_a_user_error() -> None:
    with pytest.raises(lake.IngestError, match="does not exist"):
        lake.source_digest(Path("/nonexistent/kc_house_data.csv"))
