"""Helpers of the broker tests: records as rows, bounded polling."""

from __future__ import annotations

import time
from collections.abc import Callable

from headwater.stream.broker import Consumer, RecordBatch

Record = tuple[str, int, int, bytes | None, bytes | None, int, tuple[tuple[str, bytes], ...]]


def flatten(batches: list[RecordBatch]) -> list[Record]:
    """Batches as (topic, partition, offset, key, value, timestamp, headers) rows."""
    rows: list[Record] = []
    for b in batches:
        n = len(b)
        headers = b.headers or [()] * n
        columns = ([b.topic] * n, [b.partition] * n, b.offsets, b.keys, b.values, b.timestamps, headers)
        rows.extend(zip(*columns, strict=True))
    return rows


def drain(consumer: Consumer, count: int, *, timeout: float = 20.0, max_records: int = 10_000) -> list[Record]:
    """Poll until ``count`` records arrived or ``timeout`` passed; returns what arrived."""
    rows: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(rows) < count and time.monotonic() < deadline:
        rows += flatten(consumer.poll_batch(max_records, timeout=0.2))
    return rows


def poll_until(
    consumers: list[Consumer],
    done: Callable[[], bool],
    *,
    timeout: float = 30.0,
    on_batch: Callable[[Consumer, list[RecordBatch]], None] | None = None,
) -> bool:
    """Poll every consumer in turn (a group rebalances only while its members poll) until ``done()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            batches = c.poll_batch(1_000, timeout=0.05)
            if on_batch is not None and batches:
                on_batch(c, batches)
        if done():
            return True
    return done()
