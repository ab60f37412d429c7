"""What monitoring costs a stream app per micro-batch: the same app with and without a StreamMonitor.

    .venv/bin/python bench/monitoring.py [--runs 7] [--records 100000]

One app, ``stream("in").map_batch(add a column).to("out")``, reads ``--records`` JSON records
from a MemoryBroker (the cheapest broker, so monitoring is the largest share it can be)
in micro-batches of 100 and of 1,000 records. Each run processes every record twice in this
process, once bare and once with a :class:`~headwater.monitoring.stream.StreamMonitor` that
exports Prometheus metrics and writes a status file every 2 s, in alternating order; the
figure is the wall time per batch, the median over runs, and the ratios monitored / bare of
the medians and of the minima (on a busy machine the minima are the steadier figure).
A second figure times the monitor's own calls per batch (``batch_done`` + ``tick``) alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl

from headwater.monitoring.metrics import new_registry
from headwater.monitoring.stream import StreamMonitor
from headwater.stream.app import StreamApp
from headwater.stream.broker import RecordBatch
from headwater.stream.chunk import Context, InputTable
from headwater.stream.memory import MemoryBroker


def one_run(records: int, batch: int, monitored: bool, folder: Path) -> float:
    """Seconds per batch of one pass over ``records`` records."""
    broker = MemoryBroker()
    broker.create_topic("in", 2)
    broker.create_topic("out", 1)
    producer = broker.producer()
    producer.produce_batch("in", [b'{"id": %d, "x": 1.5}' % i for i in range(records)],
                           [b"%d" % i for i in range(records)])
    producer.flush()
    app = StreamApp("bench", max_batch_records=batch, max_batch_latency=0)
    app.stream("in").map_batch(lambda df: df.with_columns(y=pl.col("x") * 2)).to("out")
    monitor = (StreamMonitor(app, registry=new_registry(), status_path=folder / f"{batch}.json")
               if monitored else None)
    if monitor is not None:
        monitor.start()
    started = time.perf_counter()
    app.run(broker, stop_when_idle=True, handle_signals=False, monitor=monitor)
    elapsed = time.perf_counter() - started
    if monitor is not None:
        monitor.close()
    assert app.metrics.records_in == records
    return elapsed / app.metrics.batches


def monitor_calls(batch: int, calls: int = 50_000) -> float:
    """Microseconds of ``batch_done`` + ``tick`` for one batch of ``batch`` records on two partitions."""
    app = StreamApp("bench")
    app.stream("in").to("out")
    monitor = StreamMonitor(app, registry=new_registry())
    half = batch // 2
    batches = [RecordBatch("in", p, list(range(half)), [None] * half, [b"x"] * half, [0] * half) for p in (0, 1)]
    ctx = Context(InputTable())

    class Kernel:
        def lag(self) -> dict:  # type: ignore[type-arg]
            return {}

    kernel = Kernel()
    started = time.perf_counter()
    for _ in range(calls):
        monitor.batch_done(batches, {"out": batch}, ctx, 0.001)
        monitor.tick(kernel)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"Stream app per-batch wall time, median of {args.runs} runs ({args.records:,} records)",
                  title_justify="left")
    for column in ("batch", "bare (us/batch)", "monitored (us/batch)", "ratio of medians", "ratio of minima",
                   "monitor calls alone (us/batch)"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (100, 1_000):
            times: dict[bool, list[float]] = {False: [], True: []}
            for run in range(args.runs):
                for monitored in ((False, True) if run % 2 == 0 else (True, False)):
                    times[monitored].append(one_run(args.records, batch, monitored, Path(tmp)))
            bare, watched = statistics.median(times[False]), statistics.median(times[True])
            least = min(times[True]) / min(times[False])  # interference only adds time: minima are steadier
            table.add_row(f"{batch:,}", f"{bare * 1e6:,.0f}", f"{watched * 1e6:,.0f}", f"{watched / bare:.3f}",
                          f"{least:.3f}", f"{monitor_calls(batch):.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
