"""A sink encodes a frame in one call, to the bytes record-by-record encoding gives for the same values."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pytest

from headwater.stream.app import StreamApp
from headwater.stream.serde import Json, exact_frame, ndjson_lines
from headwater.stream.testing import run_app
from tests.ml.house_features import synthetic_houses

ENCODER = msgspec.json.Encoder()


def _per_record(frame: pl.DataFrame) -> list[bytes]:
    return [ENCODER.encode(row) for row in frame.to_dicts()]


def _floats(rng: np.random.Generator, n: int) -> list[float | None]:
    """Floats over the whole exponent range, and the edge cases of float formatting."""
    wide = (rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)).tolist()
    edges = [0.0, -0.0, 1e15, 1e16, 1e17, 1e21, 1e22, 1e-5, 1e-6, 1e-7, 5e-324, 1.7976931348623157e308, 0.1 + 0.2,
             3.0, 123456789012345680.0, math.nan, math.inf, -math.inf, None]
    return wide + edges


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_frames_encode_to_the_per_record_bytes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    floats = _floats(rng, 3000)
    n = len(floats)
    ints = rng.integers(-(2**62), 2**62, n).tolist()
    frame = pl.DataFrame({
        "f": floats,
        "i": ints,
        "u": pl.Series(rng.integers(0, 2**63, n, dtype=np.uint64), dtype=pl.UInt64),
        "small": pl.Series(rng.integers(-100, 100, n), dtype=pl.Int8),
        "b": rng.integers(0, 2, n).astype(bool).tolist(),
        "s": [f"é\n\t\u2028\x01\"\\ {i}" for i in range(n)],
        "d": [dt.date(2000, 1, 1) + dt.timedelta(days=int(k)) for k in rng.integers(0, 9000, n)],
        "lf": [[floats[i], floats[-i - 1]] for i in range(n)],
        "st": [{"x": floats[i], "k": int(ints[i])} for i in range(n)],
        "none": [None] * n,
    })
    lines = ndjson_lines(frame, ENCODER)
    assert any(b"e" in line for line in lines)  # exponents were written (and had to match)
    assert lines == _per_record(frame)


@pytest.mark.parametrize("text", ["one e+two", "1e+16", "plain"])
def test_text_holding_an_exponent_sign_is_never_rewritten(text: str) -> None:
    frame = pl.DataFrame({"f": [1e16, 2.5e-9, 7.0], "s": [text, None, "x"], "l": [["a", text], [], None]})
    assert ndjson_lines(frame, ENCODER) == _per_record(frame)
    assert ndjson_lines(frame.drop("l"), ENCODER) == _per_record(frame.drop("l"))
    flags = pl.DataFrame({"f": [1e16, 2.0], "codes": [[text], []]})
    assert ndjson_lines(flags, ENCODER) == _per_record(flags)
    named = pl.DataFrame({"size e+x": [1e20]})
    assert ndjson_lines(named, ENCODER) == [b'{"size e+x":1e20}']


def test_types_the_writer_formats_differently_go_through_msgspec() -> None:
    frame = pl.DataFrame({
        "f32": pl.Series([0.1, 1.5], dtype=pl.Float32),
        "at": [dt.datetime(2024, 5, 1, 12, 0, 1, 5), None],
        "raw": [b"\x00\x01", None],
    })
    assert ndjson_lines(frame, ENCODER) == _per_record(frame)
    assert ndjson_lines(frame, ENCODER)[0].startswith(b'{"f32":0.10000000149011612,"at":"2024-05-01T12:00:01.000005"')


def test_house_output_frame_encodes_to_the_per_record_bytes() -> None:
    houses = synthetic_houses(4000, seed=8)
    rng = np.random.default_rng(8)
    out = houses.with_columns(
        predicted_price=pl.Series(rng.lognormal(13, 0.6, houses.height)),
        model_version=pl.lit("house_prices:3"),
        data_checks=pl.Series([["range:sqft_living"] if i % 17 == 0 else [] for i in range(houses.height)]),
    ).with_columns(predicted_price_per_sqft=(pl.col("predicted_price") / pl.col("sqft_living")).round(2))
    assert ndjson_lines(out, ENCODER) == _per_record(out)


def _decode(values: list[dict[str, Any]], *, mark_exact: bool = True) -> pl.DataFrame | None:
    serde = Json()
    serde.mark_exact = mark_exact
    return serde.try_decode_frame([msgspec.json.encode(v) for v in values])


def test_exact_frames_are_those_that_give_back_every_value_as_decoded() -> None:
    clean = [{"a": i, "f": i / 3, "s": str(i), "b": i % 2 == 0} for i in range(50)]
    frame = _decode(clean)
    assert frame is not None and exact_frame(frame) and frame.to_dicts() == clean
    assert not exact_frame(frame.head(10))  # a new frame: nothing is known about it
    assert not exact_frame(pl.DataFrame(clean))
    unasked = _decode(clean, mark_exact=False)  # the check costs time: only sources read by check() do it
    assert unasked is not None and unasked.equals(frame) and not exact_frame(unasked)
    mixed_number = [*clean[:10], {**clean[10], "f": 4}]  # an int among floats becomes 4.0
    text_in_numbers = [*clean[:10], {**clean[10], "a": "ten"}]
    null = [*clean[:10], {**clean[10], "s": None}]
    absent = [*clean[:10], {k: v for k, v in clean[10].items() if k != "s"}]
    nested = [{"a": {"x": 1}}, {"a": {"y": 2}}]
    for values in (mixed_number, text_in_numbers, null, absent, nested):
        decoded = _decode(values)
        assert decoded is not None and not exact_frame(decoded), values[-1]


def test_a_chunk_is_written_the_same_as_a_frame_or_as_rows() -> None:
    rng = np.random.default_rng(4)
    records = [{"id": i, "x": float(v), "tag": f"t{i % 5}", "xs": [float(v), 1.0]}
               for i, v in enumerate(rng.standard_normal(600) * 10.0 ** rng.integers(-40, 40, 600))]
    by_frame = StreamApp("sinks")
    by_frame.stream("in").map_batch(lambda df: df.with_columns(y=pl.col("x") * 3.0)).to("out")
    by_row = StreamApp("sinks")
    by_row.stream("in").map(lambda r: {**r, "y": r["x"] * 3.0}).to("out")
    framed = run_app(by_frame, {"in": records}, max_batch_records=200)
    rows = run_app(by_row, {"in": records}, max_batch_records=200)
    written = [r.raw for r in framed.outputs["out"]]
    assert len(written) == 600 and written == [r.raw for r in rows.outputs["out"]]
