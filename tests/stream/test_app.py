"""Every operator of the stream DSL, run through the shipped harness on a MemoryBroker."""

from __future__ import annotations

from typing import Any

import msgspec
import polars as pl
import pytest

from headwater.errors import UserError
from headwater.stream.app import StreamApp
from headwater.stream.broker import TopicNotFoundError, TopicPartition
from headwater.stream.chunk import StepContractError
from headwater.stream.dsl import StreamDefinitionError
from headwater.stream.memory import MemoryBroker
from headwater.stream.serde import Bytes, Json, Schema, Str
from headwater.stream.testing import TestRecord, run_app

HOUSES = [{"id": i, "price": 100 * i, "sqft": 10 * i} for i in range(1, 6)]


def test_map() -> None:
    app = StreamApp("mapper")
    app.stream("houses").map(lambda h: {**h, "price": h["price"] * 2}).to("out")
    result = run_app(app, inputs={"houses": HOUSES})
    assert result.values("out") == [{**h, "price": h["price"] * 2} for h in HOUSES]


def test_filter_with_a_function_and_with_an_expression() -> None:
    app = StreamApp("filters")
    houses = app.stream("houses")
    houses.filter(lambda h: h["price"] > 250).to("by_function")
    houses.filter(pl.col("price") > 250).to("by_expression")
    result = run_app(app, inputs={"houses": HOUSES})
    assert result.values("by_function") == result.values("by_expression") == HOUSES[2:]


def test_flat_map_repeats_metadata_for_every_output() -> None:
    app = StreamApp("splitter")
    app.stream("orders").flat_map(lambda o: [{"item": i} for i in o["items"]]).to("items")
    inputs = [TestRecord({"items": ["a", "b"]}, key="k1"), TestRecord({"items": []}, key="k2"),
              TestRecord({"items": ["c"]}, key="k3")]
    result = run_app(app, inputs={"orders": inputs})
    assert result.values("items") == [{"item": "a"}, {"item": "b"}, {"item": "c"}]
    assert result.keys("items") == [b"k1", b"k1", b"k3"]


def test_map_batch_runs_once_per_micro_batch_on_a_frame() -> None:
    frames: list[pl.DataFrame] = []

    def per_sqft(df: pl.DataFrame) -> pl.DataFrame:
        frames.append(df)
        return df.with_columns(per_sqft=pl.col("price") / pl.col("sqft"))

    app = StreamApp("batcher")
    app.stream("houses").map_batch(per_sqft).to("out")
    result = run_app(app, inputs={"houses": HOUSES})
    assert [v["per_sqft"] for v in result.values("out")] == [10.0] * 5
    assert len(frames) == 1 and frames[0].height == 5


def test_peek_sees_every_value_and_changes_nothing() -> None:
    seen: list[Any] = []
    app = StreamApp("peeker")
    app.stream("houses").peek(seen.append).to("out")
    result = run_app(app, inputs={"houses": HOUSES})
    assert seen == HOUSES == result.values("out")


def test_branch_routes_to_the_first_match_then_the_default() -> None:
    app = StreamApp("router")
    cheap, middle, rest = app.stream("houses").branch(pl.col("price") < 200, lambda h: h["price"] < 400)
    cheap.to("cheap")
    middle.to("middle")
    rest.to("rest")
    result = run_app(app, inputs={"houses": HOUSES})
    assert [v["id"] for v in result.values("cheap")] == [1]
    assert [v["id"] for v in result.values("middle")] == [2, 3]
    assert [v["id"] for v in result.values("rest")] == [4, 5]


def test_branch_without_default_drops_what_matches_nothing() -> None:
    app = StreamApp("router")
    streams = app.stream("houses").branch(lambda h: h["id"] == 2, default=False)
    assert len(streams) == 1
    streams[0].to("two")
    assert run_app(app, inputs={"houses": HOUSES}).values("two") == [HOUSES[1]]


def test_merge_of_two_topics() -> None:
    app = StreamApp("merger")
    a = app.stream("a").map(lambda v: {"from": "a", **v})
    b = app.stream("b", value=Schema({"n": pl.Int64})).map(lambda v: {"from": "b", **v})
    a.merge(b).to("both")
    result = run_app(app, inputs={"a": [{"n": 1}, {"n": 2}], "b": [{"n": 3}]})
    assert sorted(result.values("both"), key=lambda v: v["n"]) == [
        {"from": "a", "n": 1}, {"from": "a", "n": 2}, {"from": "b", "n": 3}
    ]


def test_branches_merged_again_keep_input_order() -> None:
    app = StreamApp("zigzag")
    even, odd = app.stream("n").branch(lambda v: v["n"] % 2 == 0)
    even.map_batch(lambda df: df.with_columns(kind=pl.lit("even"))).merge(
        odd.map(lambda v: {**v, "kind": "odd"})
    ).to("out")
    result = run_app(app, inputs={"n": [TestRecord({"n": i}, key=str(i)) for i in range(10)]})
    assert [v["n"] for v in result.values("out")] == list(range(10))
    assert result.keys("out") == [str(i).encode() for i in range(10)]


def test_key_by_function_expression_and_column() -> None:
    app = StreamApp("keys")
    houses = app.stream("houses")
    houses.key_by(lambda h: h["id"]).to("by_function")
    houses.key_by(pl.col("id") * 10).to("by_expression")
    houses.key_by("id").to("by_column", key=Json())
    result = run_app(app, inputs={"houses": HOUSES[:2]})
    assert result.keys("by_function") == [b"1", b"2"]
    assert result.keys("by_expression") == [b"10", b"20"]
    assert result.keys("by_column") == [b"1", b"2"]


def test_outputs_keep_input_key_timestamp_and_headers() -> None:
    app = StreamApp("meta")
    app.stream("in").map(lambda v: {"x": v["x"] + 1}).map_batch(lambda df: df * 2).to("out")
    record = TestRecord({"x": 1}, key=b"k", headers=(("trace", b"abc"), ("trace", b"def")), timestamp=1_700_000_000_000)
    (out,) = run_app(app, inputs={"in": [record]}).outputs["out"]
    assert (out.value, out.key, out.timestamp, out.headers) == (
        {"x": 4}, b"k", 1_700_000_000_000, (("trace", b"abc"), ("trace", b"def"))
    )


def test_unchanged_values_are_written_as_the_original_bytes() -> None:
    raw = b'{"price":  5,   "note": "spaces kept"}'
    app = StreamApp("passthrough")
    app.stream("in").filter(pl.col("price") > 1).to("out")
    result = run_app(app, inputs={"in": [raw]})
    assert [r.raw for r in result.outputs["out"]] == [raw]


def test_bytes_and_str_streams() -> None:
    app = StreamApp("text")
    app.stream("lines", value=Str()).map(str.upper).to("upper", value=Str())
    app.stream("blobs", value=Bytes()).filter(lambda b: b.startswith(b"ok")).to("ok")
    result = run_app(app, inputs={"lines": ["hé", "yo"], "blobs": [b"ok1", b"no", b"ok2"]})
    assert result.values("upper") == ["HÉ", "YO"]
    assert result.values("ok") == [b"ok1", b"ok2"]


class House(msgspec.Struct):
    id: int
    price: float


def test_typed_schema_gives_structs_to_record_functions() -> None:
    seen: list[Any] = []
    app = StreamApp("typed")
    houses = app.stream("houses", value=Schema(House))
    houses.peek(seen.append).filter(lambda h: h.price > 150).map_batch(
        lambda df: df.with_columns(price=pl.col("price") * 2)
    ).to("out", value=Schema(House))
    result = run_app(app, inputs={"houses": [House(1, 100), House(2, 200)]})
    assert seen == [House(1, 100.0), House(2, 200.0)]
    assert result.values("out") == [House(2, 400.0)]


def test_two_partitions_and_a_small_batch_size() -> None:
    app = StreamApp("partitioned")
    app.stream("houses").map_batch(lambda df: df.with_columns(double=pl.col("price") * 2)).to("out")
    inputs = [TestRecord(h, key=str(h["id"])) for h in HOUSES * 20]
    result = run_app(app, inputs={"houses": inputs}, partitions={"houses": 2}, max_batch_records=7)
    assert len(result.values("out")) == 100
    assert result.metrics["batches"] >= 100 // 7
    assert result.metrics["records_in"] == result.metrics["records_out"] == 100


def test_declaring_does_no_io() -> None:
    class NoIO:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"broker.{name} called while declaring")

    app = StreamApp("quiet", broker=NoIO())  # type: ignore[arg-type]
    a, b = app.stream("houses").filter(pl.col("price") > 0).map(dict).branch(lambda h: True)
    a.merge(b).map_batch(lambda df: df).key_by("id").peek(print).to("out")
    assert "to:out" in app.describe()


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda app: StreamApp("bad name"), "invalid stream app name"),
        (lambda app: StreamApp("ok", max_batch_records=0), "max_batch_records"),
        (lambda app: StreamApp("ok", max_batch_latency=-1), "max_batch_latency"),
        (lambda app: StreamApp("ok", processing_guarantee="twice"), "processing_guarantee"),
        (lambda app: app.stream("t").map(42), r"map\(\) takes a function, got 42"),
        (lambda app: app.stream("t").filter("price > 1"), "polars expression"),
        (lambda app: app.stream("t").branch(), "at least one predicate"),
        (lambda app: app.stream("t").merge(StreamApp("other").stream("t")), "same app"),
        (lambda app: app.stream("t", value=dict), "takes a serde"),
        (lambda app: app.stream("t").to("out", value="json"), "takes a serde"),
    ],
)
def test_declaration_errors_say_what_is_wrong(declare: Any, message: str) -> None:
    with pytest.raises(StreamDefinitionError, match=message):
        declare(StreamApp("app"))


def test_running_needs_topics_and_streams() -> None:
    broker = MemoryBroker()
    with pytest.raises(StreamDefinitionError, match="reads no topic"):
        StreamApp("empty", broker=broker).run()
    app = StreamApp("missing", broker=broker)
    app.stream("nowhere").to("neither")
    with pytest.raises(TopicNotFoundError, match="nowhere, neither") as info:
        app.run(handle_signals=False)
    assert "headwater topics create nowhere" in (info.value.hint or "")
    with pytest.raises(UserError, match="has no broker"):
        StreamApp("nobroker").run()


def test_a_map_batch_that_drops_rows_stops_the_app_without_committing() -> None:
    broker = MemoryBroker()
    app = StreamApp("dropper")
    app.stream("houses").map_batch(lambda df: df.filter(pl.col("price") > 250)).to("out")
    with pytest.raises(StepContractError, match="returned 3 rows for 5") as info:
        run_app(app, inputs={"houses": HOUSES}, broker=broker)
    assert ".filter(pl.col" in (info.value.hint or "")
    consumer = broker.consumer("dropper")
    assert consumer.committed([TopicPartition("houses", 0)]) == {TopicPartition("houses", 0): None}
    assert broker.end_offsets([TopicPartition("out", 0)])[TopicPartition("out", 0)] == 0


def test_the_stream_front_door_loads_polars_only_when_an_app_is_built() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import headwater.stream, headwater.stream.broker, headwater.stream.memory, headwater.stream.threads\n"
        "print('polars' in sys.modules, 'msgspec' in sys.modules)\n"
        "from headwater.stream import StreamApp, Json\n"
        "StreamApp('a').stream('t', value=Json())\n"
        "print('polars' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False", "True"]
    import headwater.stream

    assert set(headwater.stream.__all__) == set(headwater.stream._EXPORTS)
    assert headwater.stream.StreamApp is StreamApp
