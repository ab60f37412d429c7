"""Serdes: whole-batch decode with per-record errors, typed columns, frame encoding, round trips."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.errors import UserError
from headwater.stream.serde import (
    Bytes,
    Json,
    Schema,
    SerializationError,
    Str,
    dicts_to_frame,
    frame_to_rows,
    rows_to_frame,
)


class House(msgspec.Struct):
    id: int
    price: float
    zip: str
    garden: bool | None = None


HOUSE_COLUMNS = {"id": pl.Int64, "price": pl.Float64, "zip": pl.String}


def test_json_decodes_a_batch_and_reports_bad_records_by_index() -> None:
    rows, kept, errors = Json().decode_rows([b'{"a": 1}', b"{oops", b"[1, 2]", None, b'"text"'])
    assert rows == [{"a": 1}, [1, 2], None, "text"]
    assert kept == [0, 2, 3, 4]
    assert [i for i, _ in errors] == [1]
    assert isinstance(errors[0][1], msgspec.DecodeError)


def test_json_batch_without_errors_keeps_every_index() -> None:
    rows, kept, errors = Json().decode_rows([b'{"a": 1}', b'{"a": 2}'])
    assert (rows, kept, errors) == ([{"a": 1}, {"a": 2}], None, [])


def test_schema_struct_decodes_straight_to_typed_columns() -> None:
    frame, kept, errors = Schema(House).decode_frame(
        [b'{"id": 1, "price": 10, "zip": "a"}', b'{"id": 2, "price": 2.5, "zip": "b", "extra": [1]}']
    )
    assert kept is None and errors == []
    assert frame.schema == pl.Schema({"id": pl.Int64, "price": pl.Float64, "zip": pl.String, "garden": pl.Boolean})
    assert frame.rows() == [(1, 10.0, "a", None), (2, 2.5, "b", None)]


def test_schema_struct_rejects_wrong_types_missing_fields_and_tombstones() -> None:
    values = [
        b'{"id": 1, "price": "cheap", "zip": "a"}',
        b'{"id": 2, "zip": "b"}',
        None,
        b'{"id": 3, "price": 1.0, "zip": "c"}',
    ]
    frame, kept, errors = Schema(House).decode_frame(values)
    assert kept == [3] and frame["id"].to_list() == [3]
    messages = {i: str(exc) for i, exc in errors}
    assert "Expected `float`, got `str` - at `$.price`" in messages[0]
    assert "missing required field `price`" in messages[1]
    assert "tombstone" in messages[2]
    rows, kept, _ = Schema(House).decode_rows(values)
    assert kept == [3] and rows == [House(id=3, price=1.0, zip="c")]


def test_schema_of_columns_gives_validated_dicts_and_typed_frames() -> None:
    serde = Schema(HOUSE_COLUMNS)
    values = [b'{"id": 1, "price": 3, "zip": "a", "other": 1}', b'{"id": 2}', b'{"id": 2.5}', b'{"id": 1e30}']
    rows, kept, errors = serde.decode_rows(values)
    assert rows == [{"id": 1, "price": 3.0, "zip": "a"}, {"id": 2}]
    assert kept == [0, 1]
    assert [i for i, _ in errors] == [2, 3]
    frame, _, _ = serde.decode_frame(values)
    assert frame.schema == pl.Schema(HOUSE_COLUMNS)
    assert frame.rows() == [(1, 3.0, "a"), (2, None, None)]


def test_schema_rejects_integers_polars_cannot_hold() -> None:
    _, kept, errors = Schema({"n": pl.Int64}).decode_rows([b'{"n": 9223372036854775808}', b'{"n": -5}'])
    assert kept == [1]
    assert "<= 9223372036854775807" in str(errors[0][1])


def test_schema_encode_validates_rows() -> None:
    serde = Schema(HOUSE_COLUMNS)
    assert msgspec.json.decode(serde.encode({"id": 1, "price": 2})) == {"id": 1, "price": 2.0}
    with pytest.raises(msgspec.ValidationError, match="price"):
        serde.encode({"id": 1, "price": "x"})
    struct = Schema(House)
    assert struct.encode(House(1, 2.0, "z")) == b'{"id":1,"price":2.0,"zip":"z","garden":null}'
    assert msgspec.json.decode(struct.encode({"id": 1, "price": 2.0, "zip": "z"}))["zip"] == "z"


def test_schema_needs_a_struct_or_columns_with_polars_types() -> None:
    with pytest.raises(UserError, match="Struct class or a non-empty mapping"):
        Schema([("a", int)])  # type: ignore[arg-type]
    with pytest.raises(UserError, match="not a Polars type") as info:
        Schema({"a": "int"})
    assert "pl.Float64" in (info.value.hint or "")
    assert Schema({"a": int, "b": float}).schema == {"a": pl.Int64(), "b": pl.Float64()}


def test_bytes_and_str() -> None:
    assert Bytes().decode_rows([b"x", None]) == ([b"x", None], None, [])
    assert Bytes().encode(bytearray(b"y")) == b"y"
    with pytest.raises(SerializationError, match="got dict"):
        Bytes().encode({"a": 1})
    assert Str().decode(b"caf\xc3\xa9") == "café"
    assert [Str().encode(v) for v in ("é", b"raw", 42, None)] == ["é".encode(), b"raw", b"42", None]
    _, kept, errors = Str().decode_rows([b"ok", b"\xff"])
    assert kept == [0] and isinstance(errors[0][1], UnicodeDecodeError)


def test_frames_of_scalars_keep_one_value_column() -> None:
    frame = rows_to_frame([b"a", b"b"], "value", Bytes().schema)
    assert frame.schema == pl.Schema({"value": pl.Binary})
    assert Bytes().encode_frame(frame) == [b"a", b"b"]
    assert frame_to_rows(frame, "value") == [b"a", b"b"]
    with pytest.raises(SerializationError, match="one column"):
        Str().encode_frame(pl.DataFrame({"a": ["x"], "b": ["y"]}))


def test_rows_that_do_not_make_one_frame_raise() -> None:
    with pytest.raises(TypeError, match="JSON objects"):
        rows_to_frame([{"a": 1}, 5], dict)
    with pytest.raises(TypeError, match="one kind"):
        rows_to_frame([House(1, 1.0, "a"), {"id": 1}])


def test_structs_round_trip_through_a_frame() -> None:
    houses = [House(1, 1.5, "a", True), House(2, 2.5, "b")]
    frame = rows_to_frame(houses)
    assert frame_to_rows(frame, House) == houses
    # Columns changed by a batch step: the rows come back as dicts.
    assert frame_to_rows(frame.with_columns(id=pl.lit("x")), House)[0]["id"] == "x"


def test_json_encodes_frames_like_msgspec_encodes_rows() -> None:
    rows = [
        {"n": 1, "f": 1.5, "s": 'line\n"quoted"', "l": [1, 2], "o": {"k": "v"}, "z": None},
        {"n": None, "f": -0.0, "s": "é", "l": [], "o": {"k": None}, "z": None},
    ]
    frame = rows_to_frame(rows, dict)
    lines = Json().encode_frame(frame)
    assert [msgspec.json.decode(line) for line in lines] == rows  # type: ignore[arg-type]


def test_json_encodes_frames_polars_cannot_write_without_panicking() -> None:
    frame = pl.DataFrame({"b": [b"\x00\x01"], "d": [dt.date(2024, 1, 2)]})
    assert Json().encode_frame(frame) == [b'{"b":"AAE=","d":"2024-01-02"}']
    assert Json().encode_frame(pl.DataFrame({"a": []})) == []


# One kind of value per field (with nulls), numbers possibly mixed: the JSON a producer writes.
field_kinds = st.sampled_from(
    [
        st.integers(-(2**62), 2**62),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-1000, 1000) | st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.booleans(),
        st.lists(st.integers(-5, 5), max_size=3),
    ]
)


@st.composite
def json_batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    kinds = {name: draw(field_kinds) for name in "abcd"}
    n = draw(st.integers(1, 20))
    rows = []
    for _ in range(n):
        names = draw(st.lists(st.sampled_from("abcd"), unique=True, max_size=4))
        rows.append({name: draw(st.none() | kinds[name]) for name in names})
    return rows


@settings(max_examples=80, deadline=None)
@given(json_batches())
def test_dicts_to_frame_infers_what_from_dicts_infers(rows: list[dict[str, Any]]) -> None:
    expected = pl.from_dicts(rows, infer_schema_length=None)
    got = dicts_to_frame(rows)
    assert got.columns == expected.columns
    assert got.schema == expected.schema
    assert got.rows() == expected.rows()


json_objects = st.fixed_dictionaries(
    {
        "id": st.integers(-(2**53), 2**53),
        "price": st.floats(allow_nan=False, allow_infinity=False, width=64),
        "name": st.text(max_size=12),
        "tags": st.lists(st.text(max_size=3), max_size=3),
        "flag": st.none() | st.booleans(),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(json_objects, min_size=1, max_size=30))
def test_json_values_survive_decode_to_frame_and_encode(objects: list[dict[str, Any]]) -> None:
    values = [msgspec.json.encode(o) for o in objects]
    rows, kept, errors = Json().decode_rows(values)
    assert kept is None and not errors
    frame = rows_to_frame(rows, dict)
    encoded = Json().encode_frame(frame)
    assert [msgspec.json.decode(v) for v in encoded] == objects  # type: ignore[arg-type]


def test_json_fast_frame_learns_the_shape_and_steps_aside_for_other_shapes() -> None:
    serde = Json()
    same = [b'{"a": 1, "b": "x"}', b'{"b": "y"}', b'{"b": null, "a": 2.5}']
    frame = serde.try_decode_frame(same)
    assert frame is not None
    assert frame.equals(pl.from_dicts([msgspec.json.decode(v) for v in same], infer_schema_length=None))
    assert frame.schema == pl.Schema({"a": pl.Float64, "b": pl.String})
    # A field seen only later, a first value missing a field, a non-object, a tombstone, bad JSON: no fast frame.
    for batch in ([b'{"a": 1, "b": "x"}', b'{"a": 1, "c": 2}'], [b'{"b": "x"}', b'{"a": 1, "b": "y"}'],
                  [b'{"a": 1, "b": "x"}', b"[1]"], [b'{"a": 1, "b": "x"}', None], [b'{"a": 1, "b": "x"}', b"{oops"]):
        assert Json().try_decode_frame(batch) is None


# Rows whose fields come in one order and whose first row has them all: the shape the fast path takes.
@st.composite
def same_shape_batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    kinds = {name: draw(field_kinds) for name in names}
    first = {name: draw(st.none() | kinds[name]) for name in names}
    rest = [
        {name: draw(st.none() | kinds[name]) for name in names if draw(st.booleans())}
        for _ in range(draw(st.integers(0, 15)))
    ]
    return [first, *rest]


@settings(max_examples=80, deadline=None)
@given(st.lists(same_shape_batches() | json_batches(), min_size=1, max_size=4))
def test_json_fast_frame_is_the_frame_of_the_decoded_rows(batches: list[list[dict[str, Any]]]) -> None:
    serde = Json()  # one serde over several batches: shapes learnt from one are tried on the next
    for rows in batches:
        values = [msgspec.json.encode(r) for r in rows]
        fast = serde.try_decode_frame(values)
        if fast is None:
            continue
        expected = pl.from_dicts(rows, infer_schema_length=None)
        assert fast.columns == expected.columns
        assert fast.schema == expected.schema
        assert fast.rows() == expected.rows()


@settings(max_examples=40, deadline=None)
@given(same_shape_batches())
def test_json_fast_frame_takes_batches_of_one_shape(rows: list[dict[str, Any]]) -> None:
    assert Json().try_decode_frame([msgspec.json.encode(r) for r in rows]) is not None
