"""Properties of stream apps: per-partition order and metadata survive any chain; batch size changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater.stream.app import StreamApp
from headwater.stream.dsl import Stream
from headwater.stream.testing import AppResult, TestRecord, run_app

PARTITIONS = 3

# A step is (operator, parameter); `reference` says what it does to one value, `declare` adds it to a stream.
steps = st.one_of(
    st.tuples(st.just("filter"), st.integers(2, 4)),
    st.tuples(st.just("filter_expr"), st.integers(2, 4)),
    st.tuples(st.just("map"), st.integers(-3, 3)),
    st.tuples(st.just("map_batch"), st.integers(-3, 3)),
    st.tuples(st.just("flat_map"), st.integers(1, 3)),
    st.tuples(st.just("peek"), st.just(0)),
    st.tuples(st.just("branch_merge"), st.integers(2, 3)),
)


def reference(step: tuple[str, int], value: dict[str, Any]) -> list[dict[str, Any]]:
    op, k = step
    x = value["x"]
    if op in ("filter", "filter_expr"):
        return [value] if x % k != 0 else []
    if op == "map":
        return [{**value, "x": x + k}]
    if op == "map_batch":
        return [{**value, "x": x * 2 + k}]
    if op == "flat_map":
        return [value] * (x % k + (k > 1))  # zero, one or more copies
    if op == "branch_merge":
        return [{**value, "x": x + 1 if x % k == 0 else x - 1}]
    return [value]


def declare(step: tuple[str, int], stream: Stream) -> Stream:
    op, k = step
    if op == "filter":
        return stream.filter(lambda v: v["x"] % k != 0)
    if op == "filter_expr":
        return stream.filter(pl.col("x") % k != 0)
    if op == "map":
        return stream.map(lambda v: {**v, "x": v["x"] + k})
    if op == "map_batch":
        return stream.map_batch(lambda df: df.with_columns(x=pl.col("x") * 2 + k))
    if op == "flat_map":
        return stream.flat_map(lambda v: [v] * (v["x"] % k + (k > 1)))
    if op == "branch_merge":
        hit, miss = stream.branch(pl.col("x") % k == 0)
        return hit.map(lambda v: {**v, "x": v["x"] + 1}).merge(
            miss.map_batch(lambda df: df.with_columns(x=pl.col("x") - 1))
        )
    return stream.peek(lambda v: None)


records = st.lists(
    st.tuples(
        st.integers(0, PARTITIONS - 1),
        st.integers(-50, 50),
        st.none() | st.binary(min_size=1, max_size=4),
        st.lists(st.tuples(st.sampled_from(["a", "b"]), st.binary(max_size=3)), max_size=2).map(tuple),
        st.integers(0, 2**41),
    ),
    max_size=60,
)


def make_inputs(drawn: list[tuple[int, int, bytes | None, tuple[tuple[str, bytes], ...], int]]) -> list[TestRecord]:
    """Records with their partition and their offset in it ("o") inside the value, to follow them."""
    seen = [0] * PARTITIONS
    out = []
    for p, x, key, headers, ts in drawn:
        out.append(TestRecord({"p": p, "o": seen[p], "x": x}, key=key, headers=headers, timestamp=ts, partition=p))
        seen[p] += 1
    return out


def build(chain: list[tuple[str, int]], tail: Callable[[Stream], Stream] | None = None) -> StreamApp:
    app = StreamApp("prop")
    stream = app.stream("in")
    for step in chain:
        stream = declare(step, stream)
    (tail(stream) if tail else stream).to("out")
    return app


def per_partition(result: AppResult) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {p: [] for p in range(PARTITIONS)}
    for record in result.outputs["out"]:
        out[record.value["p"]].append(record)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.lists(steps, max_size=5), st.integers(1, 10_000))
def test_order_and_metadata_survive_any_chain(drawn: Any, chain: list[tuple[str, int]], batch: int) -> None:
    inputs = make_inputs(drawn)
    result = run_app(build(chain), inputs={"in": inputs}, partitions={"in": PARTITIONS}, max_batch_records=batch)
    assert result.dead_letters == []
    by_position = {(r.value["p"], r.value["o"]): r for r in inputs}
    got = per_partition(result)
    for p in range(PARTITIONS):
        expected: list[dict[str, Any]] = []
        for record in (r for r in inputs if r.partition == p):
            values = [record.value]
            for step in chain:
                values = [out for v in values for out in reference(step, v)]
            expected.extend(values)
        assert [r.value for r in got[p]] == expected
        for out in got[p]:
            source = by_position[(p, out.value["o"])]
            assert (out.key, out.headers, out.timestamp) == (source.key, source.headers, source.timestamp)


def fails_on_sevens(df: pl.DataFrame) -> pl.DataFrame:
    if (df["x"] % 7 == 0).any():
        raise ValueError("a seven")
    return df.with_columns(y=pl.col("x") * 3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.lists(steps, max_size=4), st.integers(1, 10_000))
def test_results_do_not_depend_on_the_batch_size(drawn: Any, chain: list[tuple[str, int]], batch: int) -> None:
    inputs = make_inputs(drawn)

    def outcome(size: int) -> tuple[dict[int, list[Any]], list[tuple[int, int, str]]]:
        app = build(chain, tail=lambda s: s.map_batch(fails_on_sevens).map(lambda v: v if v["x"] % 5 else 1 / 0))
        result = run_app(app, inputs={"in": inputs}, partitions={"in": PARTITIONS}, max_batch_records=size)
        outputs = {p: [(r.key, r.value, r.headers, r.timestamp) for r in rs] for p, rs in per_partition(result).items()}
        dead = sorted((d.partition, d.offset, d.step) for d in result.dead_letters)
        return outputs, dead

    assert outcome(batch) == outcome(10_000)
