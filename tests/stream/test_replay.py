"""The source simulator: files in, JSON records out, in order, keyed, paced by a token bucket.

Pacing is checked on a :class:`FakeClock` (records per simulated second), never by timing.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from headwater.clock import FakeClock
from headwater.errors import UserError
from headwater.stream.broker import TopicPartition
from headwater.stream.memory import MemoryBroker
from headwater.stream.partitioner import partition_for
from headwater.stream.replay import (
    TokenBucket,
    count_rows,
    detect_format,
    parse_rate,
    read_frames,
    replay,
    send_rows,
)
from tests.stream.brokertools import drain

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
CITIES = ["oslo", "lima", "pune", "kiev", "york"]


def houses(n: int) -> pl.DataFrame:
    return pl.DataFrame({
        "id": list(range(n)),
        "city": [CITIES[i % len(CITIES)] for i in range(n)],
        "price": [None if i % 7 == 0 else 1000.0 + i for i in range(n)],
        "listed": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 28) for i in range(n)],
    })


def write(df: pl.DataFrame, path: Path) -> Path:
    {".csv": df.write_csv, ".parquet": df.write_parquet, ".jsonl": df.write_ndjson}[path.suffix](path)
    return path


def topic_rows(broker: MemoryBroker, topic: str) -> list[tuple[int, bytes | None, Any]]:
    """(partition, key, decoded value) of every record, partition by partition in offset order."""
    info = broker.describe_topic(topic)
    consumer = broker.consumer(None)
    consumer.assign([TopicPartition(topic, p) for p in range(info.partitions)])
    rows = drain(consumer, sum(info.end_offsets.values()), timeout=5)
    consumer.close()
    return [(r[1], r[3], json.loads(r[4]) if r[4] is not None else None) for r in rows]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_every_row_becomes_one_json_record_in_file_order(tmp_path: Path, suffix: str) -> None:
    df = houses(2_500)
    path = write(df, tmp_path / f"houses{suffix}")
    broker = MemoryBroker()
    report = replay(path, broker.producer(), "houses")
    assert report.rows == 2_500 and report.passes == 1 and not report.stopped
    values = [v for _, _, v in topic_rows(broker, "houses")]
    assert [v["id"] for v in values] == list(range(2_500))
    assert values[1] == {"id": 1, "city": "lima", "price": 1001.0, "listed": "2024-01-02"}
    assert values[0]["price"] is None  # nulls stay null


def test_dates_times_nested_values_and_nan_as_json(tmp_path: Path) -> None:
    df = pl.DataFrame({
        "day": [dt.date(2024, 2, 29), None],
        "at": [dt.datetime(2024, 2, 29, 12, 30, 1, 500_000), None],
        "at_utc": [dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.UTC), None],
        "tags": [["a", "b"], None],
        "where": [{"lat": 1.5, "lon": -2.0}, None],
        "score": [float("nan"), 2.0],
    })
    path = write(df, tmp_path / "odd.parquet")
    broker = MemoryBroker()
    replay(path, broker.producer(), "odd")
    assert [v for _, _, v in topic_rows(broker, "odd")] == [
        {"day": "2024-02-29", "at": "2024-02-29T12:30:01.500000", "at_utc": "2024-02-29T12:30:00Z",
         "tags": ["a", "b"], "where": {"lat": 1.5, "lon": -2.0}, "score": None},
        {"day": None, "at": None, "at_utc": None, "tags": None, "where": None, "score": 2.0},
    ]


def test_a_key_column_places_records_as_a_kafka_producer_would(tmp_path: Path) -> None:
    path = write(houses(1_000), tmp_path / "houses.csv")
    broker = MemoryBroker()
    broker.create_topic("houses", 4)
    replay(path, broker.producer(), "houses", key="city")
    rows = topic_rows(broker, "houses")
    assert len(rows) == 1_000
    for partition, key, value in rows:
        assert key == value["city"].encode()
        assert partition == partition_for(key, 4)
    for p in range(4):  # file order within each partition
        ids = [v["id"] for part, _, v in rows if part == p]
        assert ids == sorted(ids)


def test_non_text_keys_are_written_as_text_and_null_keys_as_none(tmp_path: Path) -> None:
    df = pl.DataFrame({"n": [7, None], "d": [dt.date(2024, 3, 1), dt.date(2024, 3, 2)]})
    path = write(df, tmp_path / "k.parquet")
    for column, expected in (("n", [b"7", None]), ("d", [b"2024-03-01", b"2024-03-02"])):
        broker = MemoryBroker()
        replay(path, broker.producer(), "k", key=column)
        assert [k for _, k, _ in topic_rows(broker, "k")] == expected


def test_limit_with_loop_starts_over_and_stops_at_the_limit(tmp_path: Path) -> None:
    path = write(houses(300), tmp_path / "houses.jsonl")
    broker = MemoryBroker()
    report = replay(path, broker.producer(), "houses", loop=True, limit=700)
    assert (report.rows, report.passes) == (700, 3)
    ids = [v["id"] for _, _, v in topic_rows(broker, "houses")]
    assert ids == list(range(300)) + list(range(300)) + list(range(100))


def test_limit_without_loop_stops_early_and_a_short_file_ends_first(tmp_path: Path) -> None:
    path = write(houses(300), tmp_path / "houses.parquet")
    broker = MemoryBroker()
    assert replay(path, broker.producer(), "a", limit=120).rows == 120
    assert replay(path, broker.producer(), "b", limit=1_000).rows == 300
    assert [v["id"] for _, _, v in topic_rows(broker, "a")] == list(range(120))


def test_the_rate_releases_exactly_n_records_per_simulated_second(tmp_path: Path) -> None:
    path = write(houses(1_000), tmp_path / "houses.csv")
    clock = FakeClock(START)
    progress: list[tuple[float, int]] = []
    broker = MemoryBroker()
    report = replay(path, broker.producer(), "houses", rate=100, clock=clock,
                    on_progress=lambda sent: progress.append((clock.monotonic(), sent)))
    assert report.rows == 1_000
    assert report.elapsed == pytest.approx(10.0)  # simulated seconds
    assert report.rate == pytest.approx(100.0)
    # Produced in send-batches of a twentieth of a second, each flushed: not one call per record.
    assert len(progress) == 1_000 // send_rows(100) == 200
    for t, sent in progress:  # never ahead of the rate, never more than one send-batch behind
        assert 100 * t - send_rows(100) - 1e-6 <= sent <= 100 * t + 1e-6
    by_second = [max((s for t, s in progress if t <= k + 1e-9), default=0) for k in range(11)]
    assert by_second == [100 * k for k in range(11)]
    assert [v["id"] for _, _, v in topic_rows(broker, "houses")] == list(range(1_000))  # order kept


def test_a_slow_rate_still_sends_whole_records_one_at_a_time(tmp_path: Path) -> None:
    path = write(houses(5), tmp_path / "houses.csv")
    clock = FakeClock(START)
    sent_at: list[float] = []
    replay(path, MemoryBroker().producer(), "houses", rate=0.5, clock=clock,
           on_progress=lambda sent: sent_at.append(clock.monotonic()))
    assert sent_at == pytest.approx([2.0, 4.0, 6.0, 8.0, 10.0])


def test_token_bucket_starts_empty_and_caps_what_it_saves() -> None:
    clock = FakeClock(START)
    bucket = TokenBucket(10, 5, clock)
    assert bucket.take(5)
    assert clock.monotonic() == pytest.approx(0.5)
    clock.advance(60)  # an idle minute saves at most one bucket, not 600 records
    assert bucket.take(5)
    assert clock.monotonic() == pytest.approx(60.5)
    assert bucket.take(5)
    assert clock.monotonic() == pytest.approx(61.0)
    with pytest.raises(ValueError, match="cannot take 6"):
        bucket.take(6)


def test_stop_request_ends_the_replay_after_whole_batches(tmp_path: Path) -> None:
    path = write(houses(1_000), tmp_path / "houses.parquet")
    clock = FakeClock(START)
    broker = MemoryBroker()
    report = replay(path, broker.producer(), "houses", rate=100, loop=True, clock=clock,
                    should_stop=lambda: clock.monotonic() >= 3.0)
    assert report.stopped
    assert report.rows == 300
    assert [v["id"] for _, _, v in topic_rows(broker, "houses")] == list(range(300))
    assert report.summary().startswith("stopped after sending 300 rows to houses in 3.00 s (100 rows/s)")


def test_big_files_are_read_in_chunks(tmp_path: Path) -> None:
    path = write(houses(25_000), tmp_path / "houses.parquet")
    sizes = [f.height for f in read_frames(path, rows=10_000)]
    assert sizes == [10_000, 10_000, 5_000]
    assert [f.height for f in read_frames(path, rows=10_000, head=12_000)] == [10_000, 2_000]
    assert count_rows(path) == 25_000


def test_empty_files_send_nothing_even_in_a_loop(tmp_path: Path) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,city\n")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("")
    for path in (header_only, blank):
        report = replay(path, MemoryBroker().producer(), "t", loop=True)
        assert (report.rows, report.passes) == (0, 1)


def test_bad_input_fails_with_a_hint(tmp_path: Path) -> None:
    path = write(houses(3), tmp_path / "houses.csv")
    producer = MemoryBroker().producer()
    with pytest.raises(UserError, match="no column 'cty'") as excinfo:
        replay(path, producer, "t", key="cty")
    assert excinfo.value.hint == "did you mean 'city'?"
    with pytest.raises(UserError, match="no file"):
        replay(tmp_path / "missing.csv", producer, "t")
    with pytest.raises(UserError, match="cannot tell the format") as excinfo:
        detect_format(tmp_path / "houses.txt")
    assert "--format" in (excinfo.value.hint or "")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(UserError, match=r"cannot read .*broken\.jsonl"):
        replay(broken, producer, "t")


@pytest.mark.parametrize(("text", "rate"), [("500", 500), ("500/s", 500), ("2.5k/s", 2500), ("1M/s", 1e6),
                                            (" 40 / s ", 40), (".5", 0.5)])
def test_rates_people_write(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0", "-5/s", "5/min", ""])
def test_rates_that_make_no_sense(text: str) -> None:
    with pytest.raises(UserError):
        parse_rate(text)
