"""``Stream.check`` as a batch step: the same flags, dead letters and output values as record by record."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import polars as pl
import pytest

from headwater.ml.profile import profile
from headwater.quality import check_frame
from headwater.quality.stream import Check
from headwater.stream.app import StreamApp
from headwater.stream.dsl import SourceNode
from headwater.stream.steps import BatchStep
from headwater.stream.testing import AppResult, run_app
from tests.ml.house_features import synthetic_houses

INPUTS = ["date", "bedrooms", "bathrooms", "sqft_living", "sqft_lot", "floors", "waterfront", "condition", "grade",
          "yr_built", "yr_renovated", "zipcode", "lat", "long"]
POLICY = {"missing": "dead_letter", "type": "dead_letter", "null": "flag", "range": "flag", "unseen": "flag"}


@pytest.fixture(scope="module")
def house_profile() -> dict[str, Any]:
    return profile(synthetic_houses(5000, seed=11), categorical=["zipcode"])


def _listings(n: int, seed: int) -> list[dict[str, Any]]:
    """Listings without nulls (so a batch of them decodes into an exact frame) and an unchecked field."""
    houses = synthetic_houses(n, seed=seed).drop("price").with_columns(pl.col("bathrooms").fill_null(2.25))
    return houses.with_row_index("listing").to_dicts()


def _run(prof: dict[str, Any], rows: list[dict[str, Any]], *, as_rows: bool, batch: int = 500) -> AppResult:
    """The check app; ``as_rows`` puts a record step first, so the check gets rows (the record-by-record path)."""
    app = StreamApp("house_pricing")
    stream = app.stream("houses")
    if as_rows:
        stream = stream.map(lambda house: house)
    stream.check(prof, columns=INPUTS, categorical=["zipcode"], policy=POLICY).to("houses.checked")
    return run_app(app, {"houses": rows}, max_batch_records=batch)


def _violating(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flags in every batch; in the first 500 rows also values a frame of their batch would not hold exactly."""
    rows = [dict(r) for r in rows]
    for i in range(0, len(rows), 37):
        rows[i]["sqft_living"] = 90_000  # range: flagged (in exact batches too)
    for i in range(5, len(rows), 53):
        rows[i]["zipcode"] = 12345  # unseen: flagged
    for i in range(9, 500, 97):
        rows[i]["grade"] = "excellent"  # type: dead letter; the batch's grade column becomes text
    for i in range(11, 500, 101):
        rows[i]["sqft_lot"] = None  # null: flagged
    rows[13]["bathrooms"] = 2  # an int among floats: a frame holds it as 2.0
    del rows[17]["listing"]  # a field not checked, absent: a frame would give it as null
    return rows


def test_check_is_a_batch_step_so_the_source_decodes_straight_into_a_frame(house_profile: dict[str, Any]) -> None:
    app = StreamApp("house_pricing")
    app.stream("houses").check(house_profile, columns=INPUTS, categorical=["zipcode"]).to("houses.checked")
    app.topology.prepare()
    (source,) = [n for n in app.topology.nodes if isinstance(n, SourceNode)]
    check = next(n.step for n in app.topology.nodes if isinstance(getattr(n, "step", None), Check))
    assert isinstance(check, BatchStep) and source.prefer_frame
    assert getattr(source.value, "mark_exact", False)  # the frames that hold the values exactly are known


def test_clean_and_violating_batches_give_the_same_bytes_as_record_by_record(house_profile: dict[str, Any]) -> None:
    rows = _violating(_listings(1500, seed=21))
    framed = _run(house_profile, rows, as_rows=False)
    by_row = _run(house_profile, rows, as_rows=True)
    assert [r.raw for r in framed.outputs["houses.checked"]] == [r.raw for r in by_row.outputs["houses.checked"]]
    assert sorted((d.offset, d.error_message) for d in framed.dead_letters) == sorted(
        (d.offset, d.error_message) for d in by_row.dead_letters)
    grades = list(range(9, 500, 97))
    assert sorted(d.offset for d in framed.dead_letters) == grades
    assert all("grade='excellent' is not" in d.error_message for d in framed.dead_letters)
    # Values exactly as sent, JSON types included (an int stays an int, an absent field absent).
    kept = [i for i in range(len(rows)) if i not in set(grades)]
    assert len(framed.outputs["houses.checked"]) == len(kept)
    for got, i in zip(framed.outputs["houses.checked"], kept, strict=True):
        value = json.loads(got.raw or b"")
        codes = value.pop("data_checks")
        assert value == rows[i] and [type(v) for v in value.values()] == [type(v) for v in rows[i].values()]
        assert isinstance(codes, list)
    raw = {i: json.loads(got.raw or b"") for got, i in zip(framed.outputs["houses.checked"], kept, strict=True)}
    assert type(raw[13]["bathrooms"]) is int and "listing" not in raw[17]


def test_flags_are_those_of_check_frame_on_the_same_rows(house_profile: dict[str, Any]) -> None:
    rows = _listings(2000, seed=33)
    for i in range(0, 2000, 7):
        rows[i]["sqft_living"] = 120_000
    for i in range(3, 2000, 11):
        rows[i]["zipcode"] = 10_000 + i
    app = StreamApp("house_pricing")
    app.stream("houses").check(house_profile, columns=INPUTS, categorical=["zipcode"]).to("houses.checked")
    result = run_app(app, {"houses": rows}, max_batch_records=700)
    expected = check_frame(pl.DataFrame(rows), house_profile, columns=INPUTS, categorical=["zipcode"])
    assert [r["data_checks"] for r in result.values("houses.checked")] == (
        expected.frame.get_column("data_checks").to_list())
    assert [{k: v for k, v in r.items() if k != "data_checks"} for r in result.values("houses.checked")] == rows


def test_dead_letter_only_policy_passes_survivors_as_their_original_bytes(house_profile: dict[str, Any]) -> None:
    rows = _violating(_listings(600, seed=5))
    app = StreamApp("house_pricing")
    app.stream("houses").check(house_profile, columns=INPUTS, categorical=["zipcode"], policy="dead_letter").to(
        "houses.checked")
    result = run_app(app, {"houses": rows}, max_batch_records=150)
    bad = {d.offset for d in result.dead_letters}
    broken = {i for i, r in enumerate(rows) if r["sqft_living"] == 90_000 or r["zipcode"] == 12345
              or r["grade"] == "excellent" or r["sqft_lot"] is None}
    assert broken <= bad and len(bad) < len(rows)
    sent = [msgspec.json.encode(r) for i, r in enumerate(rows) if i not in bad]
    assert [r.raw for r in result.outputs["houses.checked"]] == sent  # as run_app produced them, untouched
