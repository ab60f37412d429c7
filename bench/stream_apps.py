"""The records and the apps of the streaming benchmark, each written the ways it compares.

Two shapes of record, both JSON objects keyed by their device:

* ``simple`` (~120 bytes): ``{"id", "device", "ts", "temp", "humidity", "pressure", "wind",
  "rain"}``. The app keeps records with ``temp > -5`` (about 89 %), maps the 5 numeric
  fields (unit changes) and writes ``{"id", "device", "ts", <5 fields>}`` as JSON.
* ``wide`` (~330 bytes): ``{"id", "device", "ts", "f00" ... "f19"}``, 20 numeric features.
  The app keeps records with ``f00 > -1.28`` (about 90 %), standardises the 20 features,
  scores them with a linear model and a sigmoid, and writes
  ``{"id", "device", "ts", "score", "prob", "alert", "z_max"}``.

Every way of writing an app shares the record-level functions below (``keep`` and
``transform`` per shape), so the per-record loops, the headwater app with record
functions, and the Polars expressions compute the same thing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHAPES = ("simple", "wide")
NEW_SIMPLE = ("temp_f", "humidity", "pressure", "wind_kmh", "rain_mm")
FEATURES = tuple(f"f{i:02d}" for i in range(20))
# A fixed linear model over the 20 features (deterministic, nothing fitted).
_rng = random.Random(20)
MEANS = [round(_rng.uniform(-1, 1), 3) for _ in FEATURES]
SCALES = [round(_rng.uniform(0.5, 2), 3) for _ in FEATURES]
WEIGHTS = [round(_rng.uniform(-0.5, 0.5), 3) for _ in FEATURES]
BIAS = -0.2
del _rng


# -- records ---------------------------------------------------------------------------


def make_record(shape: str, i: int, rng: random.Random) -> dict[str, Any]:
    head: dict[str, Any] = {"id": i, "device": f"d-{i % 1000:04d}", "ts": 1_732_233_600_000 + i}
    if shape == "simple":
        return head | {
            "temp": round(rng.uniform(-10, 35), 2), "humidity": round(rng.uniform(10, 99), 1),
            "pressure": round(rng.uniform(980, 1040), 1), "wind": round(rng.uniform(0, 30), 2),
            "rain": round(rng.uniform(0, 5), 2),
        }
    return head | {name: round(rng.gauss(0, 1), 4) for name in FEATURES}


def write_values(shape: str, n: int, path: Path, seed: int = 7) -> None:
    """``n`` records of ``shape`` as JSON lines (JSON has no raw newlines), deterministic."""
    import orjson

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"\n".join(orjson.dumps(make_record(shape, i, rng)) for i in range(n)))
    tmp.replace(path)


def read_values(path: Path) -> tuple[list[bytes], list[bytes]]:
    """(keys, values) of a file written by :func:`write_values`: the key is the device."""
    values = path.read_bytes().split(b"\n")
    keys = [f"d-{i % 1000:04d}".encode() for i in range(len(values))]
    return keys, values


# -- record-level logic (per-record loops and headwater record functions) ---------------------


def keep_simple(r: dict[str, Any]) -> bool:
    return bool(r["temp"] > -5)


def transform_simple(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "device": r["device"], "ts": r["ts"],
        "temp_f": r["temp"] * 1.8 + 32, "humidity": r["humidity"] / 100, "pressure": r["pressure"] - 1013.25,
        "wind_kmh": r["wind"] * 3.6, "rain_mm": r["rain"] * 10,
    }


def keep_wide(r: dict[str, Any]) -> bool:
    return bool(r["f00"] > -1.28)


def transform_wide(r: dict[str, Any]) -> dict[str, Any]:
    z = [(r[name] - mu) / sd for name, mu, sd in zip(FEATURES, MEANS, SCALES, strict=True)]
    score = BIAS + sum(w * v for w, v in zip(WEIGHTS, z, strict=True))
    prob = 1.0 / (1.0 + math.exp(-score))
    return {"id": r["id"], "device": r["device"], "ts": r["ts"], "score": score, "prob": prob,
            "alert": prob > 0.5, "z_max": max(z)}


RECORD_LOGIC: dict[str, tuple[Callable[[dict[str, Any]], bool], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "simple": (keep_simple, transform_simple),
    "wide": (keep_wide, transform_wide),
}


# -- headwater apps --------------------------------------------------------------------


def _frame_logic(shape: str) -> tuple[Any, Callable[[Any], Any]]:
    """(filter expression, map_batch function) of a shape, in Polars."""
    import polars as pl

    if shape == "simple":
        def simple(df: pl.DataFrame) -> pl.DataFrame:
            return df.select(
                "id", "device", "ts",
                temp_f=pl.col("temp") * 1.8 + 32, humidity=pl.col("humidity") / 100,
                pressure=pl.col("pressure") - 1013.25, wind_kmh=pl.col("wind") * 3.6, rain_mm=pl.col("rain") * 10,
            )

        return pl.col("temp") > -5, simple

    def wide(df: pl.DataFrame) -> pl.DataFrame:
        z = [((pl.col(name) - mu) / sd).alias(f"z_{name}")
             for name, mu, sd in zip(FEATURES, MEANS, SCALES, strict=True)]
        score = pl.sum_horizontal([pl.col(f"z_{name}") * w for name, w in zip(FEATURES, WEIGHTS, strict=True)]) + BIAS
        prob = 1.0 / (1.0 + (-pl.col("score")).exp())
        return (
            df.select("id", "device", "ts", *z)
            .with_columns(score=score, z_max=pl.max_horizontal([f"z_{name}" for name in FEATURES]))
            .with_columns(prob=prob)
            .select("id", "device", "ts", "score", "prob", alert=pl.col("prob") > 0.5, z_max="z_max")
        )

    return pl.col("f00") > -1.28, wide


def schema_of(shape: str) -> dict[str, Any]:
    import polars as pl

    head = {"id": pl.Int64, "device": pl.String, "ts": pl.Int64}
    names = ("temp", "humidity", "pressure", "wind", "rain") if shape == "simple" else FEATURES
    return head | {name: pl.Float64 for name in names}


APP_VARIANTS = ("app_json_expr", "app_schema_expr", "app_record_fns")


def build_app(variant: str, shape: str, *, name: str, group_id: str, source: str, sink: str) -> Any:
    """A headwater StreamApp (no broker yet) for ``variant``:

    * ``app_json_expr``: ``Json()`` values, ``filter`` with a Polars expression, ``map_batch``
      of Polars expressions (the frame path, types inferred per batch);
    * ``app_schema_expr``: the same on a typed ``Schema`` (columns decoded straight into
      typed Polars columns);
    * ``app_record_fns``: ``Json()``, ``filter`` and ``map`` with the Python functions the
      per-record loops use (record logic on micro-batches).
    """
    from headwater.stream import Json, Schema, StreamApp

    app = StreamApp(name, group_id=group_id, max_batch_records=10_000, max_batch_latency=0.1)
    if variant == "app_record_fns":
        keep, transform = RECORD_LOGIC[shape]
        app.stream(source, value=Json()).filter(keep).map(transform).to(sink)
        return app
    serde = Schema(schema_of(shape)) if variant == "app_schema_expr" else Json()
    predicate, fn = _frame_logic(shape)
    app.stream(source, value=serde).filter(predicate).map_batch(fn).to(sink)
    return app
