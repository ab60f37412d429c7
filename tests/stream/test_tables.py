"""Reference tables and ``Stream.enrich``: the join, its policies, and building tables (no running app needed)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from headwater.stream.app import StreamApp
from headwater.stream.chunk import StepContractError
from headwater.stream.memory import MemoryBroker
from headwater.stream.tables import Enrich, ReferenceTable, TableError, UnknownKeyError
from headwater.stream.tables.changelog import ChangelogReader
from headwater.stream.testing import run_app

ZIPS = [
    {"zipcode": "98101", "city": "Seattle", "county": "King", "lat": 47.61},
    {"zipcode": "98004", "city": "Bellevue", "county": "King", "lat": 47.62},
    {"zipcode": "98052", "city": "Redmond", "county": "King", "lat": 47.67},
]


def _zips(**kw: Any) -> ReferenceTable:
    return ReferenceTable("zips", ZIPS, key="zipcode", **kw)


# -- the join against a plain Polars join ------------------------------------------------------


def _plain_left_join(records: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """What enrich must give: Polars' own left join on the same key, input order kept."""
    return records.join(table, on="k", how="left", maintain_order="left")


@settings(max_examples=40, deadline=None)
@given(
    table_keys=st.lists(st.integers(0, 50), unique=True, max_size=30),
    record_keys=st.lists(st.one_of(st.none(), st.integers(0, 60)), max_size=80),
    seed=st.integers(0, 2**16),
)
def test_enrich_equals_a_plain_left_join_with_order_and_count_kept(
    table_keys: list[int], record_keys: list[int | None], seed: int
) -> None:
    rng = random.Random(seed)
    table = pl.DataFrame(
        {"k": table_keys, "a": [rng.random() for _ in table_keys],
         "b": [rng.choice(["x", None, "z"]) for _ in table_keys]},
        schema={"k": pl.Int64, "a": pl.Float64, "b": pl.String},
    )
    records = pl.DataFrame({"k": record_keys, "n": list(range(len(record_keys)))},
                           schema={"k": pl.Int64, "n": pl.Int64})
    step = Enrich("enrich", ReferenceTable("t", table, key="k"))

    out, rows = step.transform(records)

    assert rows is None  # one output row per input row
    assert_frame_equal(out, _plain_left_join(records, table))
    assert out["n"].to_list() == list(range(len(record_keys)))  # order kept


def test_through_an_app_unknown_and_null_keys_are_kept_with_nulls_in_input_order() -> None:
    rng = random.Random(7)
    keys: list[Any] = [rng.choice(["98101", "98004", "98052", "99999", None]) for _ in range(500)]
    app = StreamApp("enricher", max_batch_records=64)
    app.stream("houses").enrich(_zips(), on="zipcode").to("out")

    result = run_app(app, {"houses": [{"id": i, "zipcode": k} for i, k in enumerate(keys)]})

    out = result.values("out")
    assert [r["id"] for r in out] == list(range(500))
    by_zip = {z["zipcode"]: z for z in ZIPS}
    for record in out:
        known = by_zip.get(record["zipcode"])
        assert record["city"] == (known["city"] if known else None)
        assert record["lat"] == (known["lat"] if known else None)
    assert result.dead_letters == []


def test_columns_and_prefix_choose_what_is_added() -> None:
    app = StreamApp("enricher")
    app.stream("houses").enrich(_zips(), columns=["city"], prefix="zip_").to("out")

    result = run_app(app, {"houses": [{"zipcode": "98004", "city": "listed as Bellevue WA"}]})

    assert result.values("out") == [{"zipcode": "98004", "city": "listed as Bellevue WA", "zip_city": "Bellevue"}]


def test_flag_policy_marks_unknown_keys() -> None:
    app = StreamApp("enricher")
    app.stream("houses").enrich(_zips(), missing="flag", columns=["city"]).to("out")

    result = run_app(app, {"houses": [{"zipcode": "98101"}, {"zipcode": "00000"}, {"zipcode": None}]})

    assert [(r["city"], r["zips_missing"]) for r in result.values("out")] == [
        ("Seattle", False), (None, True), (None, True)]


def test_dead_letter_policy_sends_unknown_keys_to_the_dlq_with_the_reason() -> None:
    app = StreamApp("enricher")
    app.stream("houses").enrich(_zips(), missing="dead_letter", columns=["city"]).to("out")

    result = run_app(app, {"houses": [{"id": 1, "zipcode": "98101"}, {"id": 2, "zipcode": "00000"},
                                      {"id": 3, "zipcode": None}, {"id": 4, "zipcode": "98052"}]})

    assert [r["id"] for r in result.values("out")] == [1, 4]
    dead = result.dead_letters
    assert [d.offset for d in dead] == [1, 2]
    assert {d.error_type for d in dead} == {f"{UnknownKeyError.__module__}.UnknownKeyError"}
    assert "no row for zipcode='00000'" in dead[0].error_message
    assert "'zipcode' is null" in dead[1].error_message


def test_composite_keys_join_on_every_column() -> None:
    prices = ReferenceTable("median_price", [
        {"zipcode": 98101, "year": 2014, "median": 500.0},
        {"zipcode": 98101, "year": 2015, "median": 550.0},
        {"zipcode": 98004, "year": 2015, "median": 900.0},
    ], key=["zipcode", "year"])
    app = StreamApp("enricher")
    app.stream("houses").enrich(prices, on=["zip", "yr"]).to("out")

    result = run_app(app, {"houses": [{"zip": 98101, "yr": 2015}, {"zip": 98004, "yr": 2014},
                                      {"zip": 98101, "yr": 2014}]})

    assert [r["median"] for r in result.values("out")] == [550.0, None, 500.0]


# -- key types ---------------------------------------------------------------------------------


def test_an_int_key_against_a_text_key_stops_the_app_with_a_hint() -> None:
    app = StreamApp("enricher")
    app.stream("houses").enrich(_zips()).to("out")

    with pytest.raises(StepContractError) as caught:
        run_app(app, {"houses": [{"zipcode": 98101}]})

    assert "is Int64 but the key 'zipcode' of table 'zips' is String" in caught.value.message
    assert caught.value.hint is not None and "cast=True" in caught.value.hint


def test_nothing_is_committed_when_the_key_type_is_wrong() -> None:
    broker = MemoryBroker()
    app = StreamApp("enricher")
    app.stream("houses").enrich(_zips()).to("out")
    with pytest.raises(StepContractError):
        run_app(app, {"houses": [{"zipcode": 98101}]}, broker=broker)

    assert [lag.committed for lag in broker.group_lag("enricher", ["houses"])] == [None]


def test_cast_true_converts_the_records_key_and_unconvertible_values_count_as_unknown() -> None:
    int_keys = ReferenceTable("zips", ZIPS, key="zipcode", schema={"zipcode": pl.Int64, "city": pl.String})
    app = StreamApp("enricher")
    app.stream("houses").enrich(int_keys, cast=True, missing="flag").to("out")

    result = run_app(app, {"houses": [{"zipcode": "98052"}, {"zipcode": "not a zip"}]})

    assert [(r["city"], r["zips_missing"]) for r in result.values("out")] == [("Redmond", False), (None, True)]


def test_integer_widths_match_without_asking() -> None:
    table = ReferenceTable("t", pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}, schema={"k": pl.Int32, "v": pl.String}),
                           key="k")
    out, _ = Enrich("e", table).transform(pl.DataFrame({"k": [2, 3, 1]}, schema={"k": pl.Int64}))
    assert out["v"].to_list() == ["b", None, "a"]


def test_a_field_the_table_would_overwrite_is_refused_with_a_hint() -> None:
    step = Enrich("e", _zips())
    with pytest.raises(StepContractError) as caught:
        step.transform(pl.DataFrame({"zipcode": ["98101"], "lat": [47.0]}))
    assert "'lat'" in caught.value.message and "prefix=" in str(caught.value.hint)


# -- declaring ---------------------------------------------------------------------------------


def test_enrich_arguments_are_checked_when_declared() -> None:
    stream = StreamApp("a").stream("houses")
    with pytest.raises(TableError, match="no column"):
        stream.enrich(_zips(), columns=["town"])
    with pytest.raises(TableError, match="missing must be one of"):
        stream.enrich(_zips(), missing="drop")
    with pytest.raises(TableError, match="1 column"):
        stream.enrich(_zips(), on=["zipcode", "year"])
    with pytest.raises(TableError, match="takes a ReferenceTable"):
        stream.enrich({"98101": "Seattle"})


def test_tables_from_a_frame_a_csv_a_parquet_file_and_rows_hold_the_same_rows(tmp_path: Path) -> None:
    frame = pl.DataFrame(ZIPS)
    frame.write_csv(tmp_path / "zips.csv")
    frame.write_parquet(tmp_path / "zips.parquet")
    schema: dict[str, Any] = {"zipcode": pl.String, "city": pl.String, "county": pl.String, "lat": pl.Float64}
    tables = [
        ReferenceTable("a", frame, key="zipcode"),
        ReferenceTable("b", tmp_path / "zips.csv", key="zipcode", schema=schema),
        ReferenceTable("c", str(tmp_path / "zips.parquet"), key="zipcode"),
        ReferenceTable("d", ZIPS, key="zipcode"),
    ]
    for table in tables:
        assert_frame_equal(table.snapshot(), frame.select(pl.col(c).cast(t) for c, t in schema.items()))
    assert tables[1].get("98004") == ZIPS[1]
    assert tables[1].get("00000") is None


def test_a_csv_zip_code_declared_as_text_keeps_its_leading_zero(tmp_path: Path) -> None:
    (tmp_path / "z.csv").write_text("zipcode,city\n02134,Allston\n")
    table = ReferenceTable("z", tmp_path / "z.csv", key="zipcode", schema={"zipcode": pl.String, "city": pl.String})
    assert table.get("02134") == {"zipcode": "02134", "city": "Allston"}


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([{"k": 1}, {"k": 1}], {}, "appear more than once"),
        ([{"k": 1}, {"k": None}], {}, "null key"),
        ([{"k": 1}], {"key": "zipcode"}, "not among its columns"),
        (None, {}, "no data and no schema"),
        ([{"k": "x"}], {"schema": {"k": pl.Int64}}, "do not make a frame|does not fit"),
    ],
)
def test_bad_tables_are_refused_with_a_reason(rows: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TableError, match=message):
        ReferenceTable("t", rows, **{"key": "k", **kwargs})


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="no file"):
        ReferenceTable("t", tmp_path / "nope.csv", key="k")


# -- the changelog format ------------------------------------------------------------------------


def _read(*values: bytes | None, key: bytes | None = None) -> Any:
    reader = ChangelogReader(["zipcode"], {"zipcode": pl.String, "city": pl.String, "pop": pl.Int64})
    return reader.read([("cdc", 0, i, key, v) for i, v in enumerate(values)])


def test_changelog_upserts_deletes_plain_rows_and_tombstones() -> None:
    changes = _read(
        b'{"op": "upsert", "key": 98101, "value": {"city": "Seattle", "pop": 10}}',
        b'{"zipcode": "98004", "city": "Bellevue"}',
        b'{"op": "delete", "key": "98052"}',
        b'{"op": "upsert", "key": "98052", "value": {"city": "Redmond"}}',  # a later change of a key wins
        b'{"op": "update", "key": "98004", "value": {"city": "Bellevue WA", "extra": 1}}',
    )
    assert sorted(changes.upserts.rows()) == [("98004", "Bellevue WA", None), ("98052", "Redmond", None),
                                              ("98101", "Seattle", 10)]
    assert changes.deletes.height == 0 and changes.rejected == []
    tomb = _read(None, key=b"98101")
    assert tomb.deletes.rows() == [("98101",)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"op": "merge", "key": "1"}', "unknown op 'merge'"),
        (b'{"op": "delete"}', 'needs a non-null "key"'),
        (b'{"op": "upsert", "key": "1", "value": 5}', 'needs "value"'),
        (b'{"city": "nowhere"}', "has no zipcode"),
        (b'{"op": "upsert", "key": "1", "value": {"pop": "many"}}', "column 'pop': 'many' is not a Int64"),
        (b'{"op": "upsert", "key": "1", "value": {"city": ["a", "b"]}}', "column 'city'"),
        (None, "tombstone (null value) without a record key"),
    ],
)
def test_malformed_changelog_records_are_rejected_with_a_reason_and_the_rest_applies(
    value: bytes | None, reason: str
) -> None:
    changes = _read(b'{"zipcode": "98101", "city": "Seattle"}', value, b'{"zipcode": "98004", "city": "Bellevue"}')
    assert [r.offset for r in changes.rejected] == [1]
    assert reason in changes.rejected[0].reason
    assert sorted(changes.upserts["zipcode"].to_list()) == ["98004", "98101"]
