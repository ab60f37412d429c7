"""The source simulator: replay the rows of a CSV, Parquet or JSON-lines file into a topic.

::

    from headwater.stream.replay import replay
    report = replay("houses.parquet", broker.producer(), "houses", rate=500, key="house_id")
    print(report.summary())          # sent 10,000 rows to houses in 20.0 s (500 rows/s)

This turns a batch file into a live stream (``headwater stream replay`` on the command
line). Rows are read with Polars in chunks (``collect_batches`` of a lazy scan), so a file
larger than memory is never loaded whole, and each row becomes one JSON object: dates and
times as ISO 8601 strings, nulls (and NaN) as ``null``, nested lists and structs as JSON
arrays and objects. With ``key``, the column's value (as text) is the record key, so the
record lands where a Kafka producer would put it (murmur2 of the key).

Pacing is a token bucket over the monotonic clock: ``rate`` tokens a second, starting
empty, at most one send-batch (a twentieth of a second of records) in the bucket, and
records produced a send-batch at a time followed by a flush, so a consumer sees a steady
stream rather than one sleep per record or a burst per second. Without ``rate`` rows go as fast as the
broker takes them. The clock is injectable (:class:`headwater.clock.FakeClock`), which is
how tests check pacing by counting records per simulated second, not by timing.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.clock import Clock, SystemClock
from headwater.errors import UserError

if TYPE_CHECKING:
    import polars as pl

    from headwater.stream.broker import Producer

#: Rows read from the file at a time.
READ_ROWS = 10_000
#: A rate-limited replay produces and flushes this many times a second.
SENDS_PER_SECOND = 20
MAX_SEND_ROWS = 5_000

FORMATS = ("csv", "tsv", "parquet", "jsonl")
_SUFFIXES = {
    ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*(?:/\s*s)?\s*$")
# How many rows Polars looks at to guess column types (its default, 100, guesses wrong
# when a column is empty or integral for a while).
_INFER_ROWS = 10_000


def parse_rate(text: str) -> float:
    """``"500"``, ``"500/s"``, ``"2.5k/s"``, ``"1M/s"`` -> records per second."""
    match = _RATE.match(text)
    if not match:
        raise UserError(f"cannot read the rate {text!r}", hint="write records per second: 500, 500/s, 2.5k/s or 1M/s")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if value <= 0:
        raise UserError(
            f"the rate must be above 0 records/s, got {text!r}", hint="leave out --rate to send at full speed"
        )
    return value


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """``csv``, ``tsv``, ``parquet`` or ``jsonl``: ``fmt`` if given, else from the file's suffix."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UserError(f"unknown file format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    found = _SUFFIXES.get(suffix)
    if found is None:
        raise UserError(
            f"cannot tell the format of {path} from its suffix {suffix or '(none)'!r}",
            hint=f"name it .csv, .tsv, .parquet or .jsonl, or pass --format ({', '.join(FORMATS)})",
        )
    return found


def scan(path: str | Path, fmt: str | None = None) -> pl.LazyFrame:
    """A lazy Polars scan of the file (nothing is read yet)."""
    import polars as pl

    path = Path(path)
    kind = detect_format(path, fmt)
    if not path.is_file():
        raise UserError(f"no file {path}", hint="give the path of a CSV, Parquet or JSON-lines file")
    if kind in ("csv", "tsv"):
        return pl.scan_csv(path, separator="\t" if kind == "tsv" else ",", infer_schema_length=_INFER_ROWS)
    if kind == "parquet":
        return pl.scan_parquet(path)
    return pl.scan_ndjson(path, infer_schema_length=_INFER_ROWS)


def _read_error(path: Path, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(
        f"cannot read {path}: {first}",
        hint="check that the file is well-formed CSV, Parquet or JSON lines (one object per line)",
    )


def columns(path: str | Path, fmt: str | None = None) -> list[str]:
    """The file's column names (reads only its head)."""
    import polars as pl

    if Path(path).is_file() and Path(path).stat().st_size == 0:
        return []
    try:
        return scan(path, fmt).collect_schema().names()
    except pl.exceptions.PolarsError as exc:
        raise _read_error(Path(path), exc) from exc


def count_rows(path: str | Path, fmt: str | None = None) -> int:
    """How many rows the file holds (Parquet: from its metadata; text formats: one fast scan)."""
    import polars as pl

    if Path(path).stat().st_size == 0:
        return 0
    try:
        return int(scan(path, fmt).select(pl.len()).collect().item())
    except pl.exceptions.PolarsError as exc:
        raise _read_error(Path(path), exc) from exc


def read_frames(
    path: str | Path, fmt: str | None = None, *, rows: int = READ_ROWS, head: int | None = None
) -> Iterator[pl.DataFrame]:
    """The file's rows in order (the first ``head`` only, if given), as frames of at most
    ``rows`` rows, never the whole file at once."""
    import polars as pl

    path = Path(path)
    lazy = scan(path, fmt)
    if path.stat().st_size == 0:
        return
    if head is not None:
        lazy = lazy.head(head)  # the scan stops there instead of reading the rest
    try:
        if hasattr(lazy, "collect_batches"):  # Polars >= 1.33: a streaming query with back-pressure
            for frame in lazy.collect_batches(chunk_size=rows, maintain_order=True):
                if frame.height:
                    yield from _split(frame, rows)
            return
        offset = 0  # older Polars: slices (Parquet skips row groups; text formats rescan)
        while True:
            frame = lazy.slice(offset, rows).collect()
            if not frame.height:
                return
            yield frame
            offset += frame.height
    except pl.exceptions.PolarsError as exc:
        raise _read_error(path, exc) from exc


def _split(frame: pl.DataFrame, rows: int) -> Iterator[pl.DataFrame]:
    for start in range(0, frame.height, rows):
        yield frame.slice(start, rows)


class RowEncoder:
    """Frames to record columns: JSON values and, with ``key``, UTF-8 keys from that column."""

    def __init__(self, key: str | None = None) -> None:
        import msgspec

        self.key = key
        self._encode = msgspec.json.Encoder().encode

    def check(self, names: list[str]) -> None:
        """Fail early, with a hint, when the key column is not in the file."""
        if self.key is not None and names and self.key not in names:
            close = difflib.get_close_matches(self.key, names, n=1)
            shown = ", ".join(names[:15]) + (" ..." if len(names) > 15 else "")
            raise UserError(
                f"the file has no column {self.key!r} to use as the key",
                hint=f"did you mean {close[0]!r}?" if close else f"its columns: {shown}",
            )

    def encode(self, frame: pl.DataFrame) -> tuple[list[bytes | None], list[bytes | None] | None]:
        encode = self._encode
        try:
            values: list[bytes | None] = [encode(row) for row in frame.iter_rows(named=True)]
        except TypeError as exc:
            raise UserError(f"a row cannot be written as JSON: {exc}") from exc
        if self.key is None:
            return values, None
        return values, [key_bytes(v) for v in frame.get_column(self.key).to_list()]


def key_bytes(value: Any) -> bytes | None:
    """A column value as a record key: text as UTF-8, dates in ISO 8601, null as no key."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat().encode()
    return str(value).encode()


class TokenBucket:
    """``rate`` tokens a second, holding at most ``capacity``.

    It starts empty, so by time ``t`` after its creation at most ``rate * t`` tokens were
    taken: a short replay's achieved rate never shows more than was asked for.
    """

    def __init__(self, rate: float, capacity: float, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be above 0, got {rate}")
        self.rate = float(rate)
        self.capacity = max(1.0, float(capacity))
        self._clock = clock
        self._tokens = 0.0
        self._last = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self, n: int, should_stop: Callable[[], bool] | None = None) -> bool:
        """Wait until ``n`` tokens are there and spend them; False if ``should_stop`` said so first.

        Waits are cut in slices of at most 0.1 s so a stop request is seen soon at slow rates.
        """
        if n > self.capacity:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.capacity}")
        self._refill()
        while self._tokens + 1e-9 < n:
            if should_stop is not None and should_stop():
                return False
            self._clock.sleep(min(0.1, (n - self._tokens) / self.rate))
            self._refill()
        self._tokens -= n
        return True


def send_rows(rate: float | None) -> int:
    """Records produced (then flushed) at a time: 1/20 s worth at a rate, a read chunk without."""
    if rate is None:
        return READ_ROWS
    return max(1, min(MAX_SEND_ROWS, int(rate / SENDS_PER_SECOND)))


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did: rows sent, seconds taken (on its clock), passes over the file."""

    topic: str
    rows: int
    elapsed: float
    passes: int
    stopped: bool = False

    @property
    def rate(self) -> float:
        """Achieved rows per second."""
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        rate = f"{self.rate:,.0f} rows/s" if self.elapsed > 0 else "- rows/s"
        loops = f", {self.passes} passes over the file" if self.passes > 1 else ""
        how = "stopped after sending" if self.stopped else "sent"
        return f"{how} {self.rows:,} rows to {self.topic} in {self.elapsed:.2f} s ({rate}){loops}"


def replay(
    path: str | Path,
    producer: Producer,
    topic: str,
    *,
    rate: float | None = None,
    key: str | None = None,
    loop: bool = False,
    limit: int | None = None,
    fmt: str | None = None,
    clock: Clock | None = None,
    on_progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ReplayReport:
    """Produce the file's rows to ``topic`` in order; returns once done, at ``limit``, or when stopped.

    ``loop`` starts over at the end of the file until ``limit`` rows are sent (or until
    ``should_stop``). ``on_progress(rows_sent)`` is called after each flush. Every record
    produced is flushed before this returns.
    """
    if limit is not None and limit < 0:
        raise UserError(f"--limit must be 0 or more rows, got {limit}")
    clock = clock or SystemClock()
    encoder = RowEncoder(key)
    encoder.check(columns(path, fmt))
    step = send_rows(rate)
    bucket = TokenBucket(rate, step, clock) if rate is not None else None
    stop = should_stop or (lambda: False)
    start = clock.monotonic()
    sent, passes, stopped = 0, 0, False

    def done() -> bool:
        return limit is not None and sent >= limit

    while not done() and not stopped:
        passes += 1
        before = sent
        head = None if limit is None else limit - sent
        for frame in read_frames(path, fmt, rows=max(step, READ_ROWS), head=head):
            values, keys = encoder.encode(frame)
            for lo in range(0, len(values), step):
                n = len(values) - lo if limit is None else min(len(values) - lo, limit - sent)
                n = min(n, step)
                if n <= 0:
                    break
                if stop() or (bucket is not None and not bucket.take(n, stop)):
                    stopped = True
                    break
                producer.produce_batch(topic, values[lo : lo + n], None if keys is None else keys[lo : lo + n])
                producer.flush()
                sent += n
                if on_progress is not None:
                    on_progress(sent)
            if done() or stopped:
                break
        if not loop or sent == before:  # one pass, or an empty file: nothing to loop over
            break
    producer.flush()
    return ReplayReport(topic, sent, clock.monotonic() - start, passes, stopped)
