"""Micro benchmark of ``Stream.enrich``: the join step alone, and an app with and without it.

Run: ``.venv/bin/python bench/stream_tables.py [--records 200000] [--runs 3]``

1. **Step alone**: :class:`~headwater.stream.tables.Enrich` on a 10,000-row frame of
   house-like records (21 columns), against a table of 70 zip codes (King County) and of
   42,000 (every US zip code), next to the plain Polars left join it wraps. Rows/s, median.
2. **App**: JSON in, JSON out on the embedded log, ``--records`` house records, the same app
   with and without ``.enrich(zips, on="zipcode")``. Records/s end to end (decode, steps,
   encode, produce, commit), median of ``--runs``, and the ratio with/without, measured in
   one invocation.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
from rich.console import Console
from rich.table import Table

from headwater.stream.app import StreamApp
from headwater.stream.log import EmbeddedBroker
from headwater.stream.tables import Enrich, ReferenceTable

KC_ZIPS = 70
US_ZIPS = 42_000


def houses(n: int, zips: int, seed: int = 3) -> list[dict[str, Any]]:
    """House-like records: the 21 columns of kc_house_data (no price), int zip codes, ~5 % unknown."""
    rng = random.Random(seed)
    return [
        {
            "id": i, "date": "20140625T000000", "bedrooms": rng.randint(1, 6),
            "bathrooms": rng.choice([1, 1.5, 2, 2.5]),
            "sqft_living": rng.randint(500, 5000), "sqft_lot": rng.randint(1000, 20000), "floors": 1.0,
            "waterfront": 0, "view": 0, "condition": 3, "grade": rng.randint(5, 11), "sqft_above": 1000,
            "sqft_basement": 0, "yr_built": rng.randint(1900, 2014), "yr_renovated": 0,
            "zipcode": 98000 + rng.randrange(int(zips * 1.05)), "lat": 47.5, "long": -122.2,
            "sqft_living15": 1500, "sqft_lot15": 5000, "x": rng.random(),
        }
        for i in range(n)
    ]


def zip_table(n: int) -> ReferenceTable:
    rng = random.Random(5)
    frame = pl.DataFrame({
        "zipcode": [98000 + i for i in range(n)],
        "city": [f"city-{i % 400}" for i in range(n)],
        "county": ["King County"] * n,
        "zip_lat": [47 + rng.random() for _ in range(n)],
        "zip_long": [-122 - rng.random() for _ in range(n)],
    })
    return ReferenceTable("zips", frame, key="zipcode")


def bench_step(runs: int) -> list[tuple[str, float, float]]:
    """(table, rows/s of Enrich, rows/s of the plain Polars join) on a 10k-row frame."""
    out = []
    for label, size in (("70 zips (King County)", KC_ZIPS), ("42,000 zips (US)", US_ZIPS)):
        table = zip_table(size)
        frame = pl.DataFrame(houses(10_000, size))
        step = Enrich("enrich", table)
        right = table.snapshot()
        step.transform(frame)  # warm: the join side is shaped once per table version

        ours = partial(step.transform, frame)
        plain = partial(frame.join, right, on="zipcode", how="left", maintain_order="left")
        out.append((label, _rate(ours, 10_000, runs * 20), _rate(plain, 10_000, runs * 20)))
    return out


def _rate(fn: Any, rows: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return rows / statistics.median(times)


def bench_app(records: int, runs: int, folder: Path) -> tuple[float, float]:
    """Median records/s of the app without and with enrich, runs alternated."""
    broker = EmbeddedBroker(folder)
    broker.create_topic("houses", 1)
    producer = broker.producer()
    encoder = msgspec.json.Encoder()
    rows = houses(records, KC_ZIPS)
    producer.produce_batch("houses", [encoder.encode(r) for r in rows])
    producer.flush()
    producer.close()
    table = zip_table(KC_ZIPS)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for run in range(runs):
        for enrich in (False, True):
            sink = f"out-{int(enrich)}-{run}"
            broker.create_topic(sink, 1)
            app = StreamApp(f"bench-{int(enrich)}-{run}", max_batch_records=10_000)
            stream = app.stream("houses")
            # Both apps have one batch step, so both decode into a frame: the difference is the join.
            stream = stream.enrich(table, on="zipcode") if enrich else stream.map_batch(lambda df: df)
            stream.to(sink)
            start = time.perf_counter()
            app.run(broker, stop_when_idle=True, handle_signals=False)
            rates[enrich].append(records / (time.perf_counter() - start))
    broker.close()
    return statistics.median(rates[False]), statistics.median(rates[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    console = Console()

    with console.status("enrich step on 10k-row batches..."):
        step = bench_step(args.runs)
    table = Table(title="Enrich step alone: 10,000-row batch, rows/s (median)")
    for col in ("table", "enrich step", "plain Polars left join", "step / plain"):
        table.add_column(col, justify="right" if col != "table" else "left")
    for label, ours, plain in step:
        table.add_row(label, f"{ours:,.0f}", f"{plain:,.0f}", f"{ours / plain:.2f}")
    console.print(table)

    with tempfile.TemporaryDirectory() as tmp, console.status(f"apps on {args.records:,} records..."):
        without, with_enrich = bench_app(args.records, args.runs, Path(tmp))
    app_table = Table(title=f"App on the embedded log, JSON in/out, {args.records:,} records, records/s (median)")
    for col in ("app", "records/s"):
        app_table.add_column(col, justify="right" if col != "app" else "left")
    app_table.add_row("map_batch(identity) (no enrich)", f"{without:,.0f}")
    app_table.add_row("enrich(zips, on='zipcode') (70 zips)", f"{with_enrich:,.0f}")
    app_table.add_row("ratio with / without", f"{with_enrich / without:.2f}")
    console.print(app_table)


if __name__ == "__main__":
    main()
