"""Dead letters: bad records leave with their original bytes and the reason; the rest of the batch goes on."""

from __future__ import annotations

import polars as pl
import pytest

from headwater.stream.app import StreamApp
from headwater.stream.dlq import DeadLetterRecord
from headwater.stream.serde import Schema
from headwater.stream.testing import AppResult, TestRecord, run_app

GOOD = [{"id": i, "price": float(i)} for i in range(6)]
HEADERS = (("source", b"sensor-7"),)


def _by_offset(result: AppResult) -> dict[int, DeadLetterRecord]:
    return {d.offset: d for d in result.dead_letters}


def _with(bad: bytes, at: int = 3, key: bytes = b"bad-key") -> list[TestRecord]:
    """GOOD with ``bad`` inserted at offset ``at``."""
    records = [TestRecord(v, key=str(v["id"])) for v in GOOD]
    records.insert(at, TestRecord(bad, key=key, headers=HEADERS, timestamp=1234))
    return records


def test_malformed_json_is_dead_lettered_with_its_bytes_and_position() -> None:
    app = StreamApp("scorer")
    app.stream("houses").map_batch(lambda df: df.with_columns(double=pl.col("price") * 2)).to("out")
    result = run_app(app, inputs={"houses": _with(b'{"id": 9, "price": ')})
    assert [v["id"] for v in result.values("out")] == [0, 1, 2, 3, 4, 5]
    (dead,) = result.dead_letters
    assert (dead.key, dead.value, dead.headers, dead.timestamp) == (b"bad-key", b'{"id": 9, "price": ', HEADERS, 1234)
    assert (dead.topic, dead.partition, dead.offset, dead.step, dead.app) == ("houses", 0, 3, "decode:houses", "scorer")
    assert dead.error_type == "msgspec.DecodeError"
    assert "truncated" in dead.error_message


def test_a_wrong_type_for_a_typed_schema_is_dead_lettered() -> None:
    app = StreamApp("typed")
    app.stream("houses", value=Schema({"id": pl.Int64, "price": pl.Float64})).map_batch(
        lambda df: df.with_columns(double=pl.col("price") * 2)
    ).to("out")
    result = run_app(app, inputs={"houses": _with(b'{"id": 9, "price": "expensive"}')})
    assert len(result.values("out")) == 6
    (dead,) = result.dead_letters
    assert dead.error_type == "msgspec.ValidationError"
    assert dead.error_message == "Expected `float | null`, got `str` - at `$.price`"
    assert (dead.step, dead.offset, dead.value) == ("decode:houses", 3, b'{"id": 9, "price": "expensive"}')


def test_a_record_function_that_raises_dead_letters_only_that_record() -> None:
    def score(house: dict) -> dict:
        return {**house, "score": 100 / house["price"]}

    app = StreamApp("scorer")
    app.stream("houses").map(score, name="score").to("out")
    result = run_app(app, inputs={"houses": [TestRecord(v, key=str(v["id"]), headers=HEADERS) for v in GOOD]})
    assert [v["id"] for v in result.values("out")] == [1, 2, 3, 4, 5]
    (dead,) = result.dead_letters
    assert (dead.step, dead.error_type, dead.error_message) == ("score", "ZeroDivisionError", "float division by zero")
    assert (dead.key, dead.value, dead.headers) == (b"0", b'{"id":0,"price":0.0}', HEADERS)
    assert "in score" in dead.traceback


def test_a_batch_function_that_raises_is_bisected_so_good_rows_go_on() -> None:
    calls: list[int] = []

    def strict(df: pl.DataFrame) -> pl.DataFrame:
        calls.append(df.height)
        if (df["price"] < 0).any():
            raise ValueError(f"negative price in {df.height} rows")
        return df.with_columns(root=pl.col("price").sqrt())

    values = [{"id": i, "price": -1.0 if i in (3, 17) else float(i)} for i in range(32)]
    app = StreamApp("bisect")
    app.stream("houses").map_batch(strict, name="strict").to("out")
    result = run_app(app, inputs={"houses": values})
    assert [v["id"] for v in result.values("out")] == [i for i in range(32) if i not in (3, 17)]
    assert sorted(_by_offset(result)) == [3, 17]
    assert {d.step for d in result.dead_letters} == {"strict"}
    assert result.dead_letters[0].error_message == "negative price in 1 rows"
    assert len(calls) < 32  # bisection, not row by row


def test_a_polars_panic_in_a_batch_function_is_isolated_too() -> None:
    def panics_on_seven(df: pl.DataFrame) -> pl.DataFrame:
        if 7 in df["id"].to_list():
            raise pl.exceptions.PanicException("not yet implemented")
        return df

    app = StreamApp("panicky")
    app.stream("houses").map_batch(panics_on_seven).to("out")
    result = run_app(app, inputs={"houses": [{"id": i} for i in range(10)]})
    assert [v["id"] for v in result.values("out")] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert [d.error_type for d in result.dead_letters] == ["pyo3_runtime.PanicException"]


def test_values_that_do_not_fit_a_frame_are_dead_lettered_by_the_batch_step() -> None:
    app = StreamApp("shapes")
    app.stream("in").filter(pl.col("x") > 0, name="positive").to("out")
    result = run_app(app, inputs={"in": [{"x": 1}, [1, 2], {"x": 2}, "text"]})
    assert result.values("out") == [{"x": 1}, {"x": 2}]
    assert sorted(_by_offset(result)) == [1, 3]
    assert {d.step for d in result.dead_letters} == {"positive"}


def test_a_value_that_cannot_be_encoded_is_dead_lettered_by_the_sink() -> None:
    app = StreamApp("encoder")
    app.stream("in").map(lambda v: {"z": complex(1, 2)} if v["tag"] == "set" else v).to("out")
    result = run_app(app, inputs={"in": [{"tag": "a"}, {"tag": "set"}, {"tag": "b"}]})
    assert result.values("out") == [{"tag": "a"}, {"tag": "b"}]
    (dead,) = result.dead_letters
    assert (dead.step, dead.offset, dead.value) == ("to:out", 1, b'{"tag":"set"}')


def test_a_key_that_cannot_be_encoded_is_dead_lettered() -> None:
    app = StreamApp("keys")
    app.stream("in").key_by(lambda v: v["k"]).to("out")
    result = run_app(app, inputs={"in": [{"k": "a"}, {"k": [1]}, {"k": 3}]})
    assert result.keys("out") == [b"a", b"3"]
    assert [(d.step, d.offset) for d in result.dead_letters] == [("to:out", 1)]


def test_a_raising_branch_predicate_dead_letters_the_record_once() -> None:
    app = StreamApp("router")
    a, b = app.stream("in").branch(lambda v: 10 / v["n"] > 1)
    a.to("a")
    b.to("b")
    result = run_app(app, inputs={"in": [{"n": 1}, {"n": 0}, {"n": 100}]})
    assert result.values("a") == [{"n": 1}]
    assert result.values("b") == [{"n": 100}]
    assert [(d.step, d.error_type) for d in result.dead_letters] == [("branch", "ZeroDivisionError")]


@pytest.mark.parametrize("value", [None, b"null"])
def test_tombstones_reach_json_functions_as_none_and_fail_typed_schemas(value: bytes | None) -> None:
    app = StreamApp("tombstones")
    app.stream("loose").filter(lambda v: v is None).to("nones")
    app.stream("typed", value=Schema({"a": pl.Int64})).to("typed-out")
    result = run_app(app, inputs={"loose": [TestRecord(value)], "typed": [TestRecord(value), {"a": 1}]})
    assert result.values("nones") == [None]
    assert result.values("typed-out") == [{"a": 1}]
    assert [(d.topic, d.offset) for d in result.dead_letters] == [("typed", 0)]


def test_counters() -> None:
    app = StreamApp("counted")
    app.stream("in").map(lambda v: 1 / v["n"]).to("out")
    metrics = run_app(app, inputs={"in": [{"n": 1}, {"n": 0}, b"{", {"n": 2}]}).metrics
    assert (metrics["records_in"], metrics["records_out"], metrics["records_dead_lettered"]) == (4, 2, 2)
    assert metrics["batches"] == 1 and metrics["commits"] == 1
    assert metrics["out_by_topic"] == {"out": 2}
    assert metrics["batch_latency"]["count"] == 1
    assert metrics["batch_latency"]["histogram"]["+Inf"] == 1
