"""``headwater topics``, ``groups`` and ``stream replay`` through the real CLI, on the embedded log."""

from __future__ import annotations

import datetime as dt
import re
import signal
from pathlib import Path

import polars as pl
import pytest

from headwater.stream.broker import TopicPartition
from headwater.stream.partitioner import partition_for
from tests.stream.clitools import StreamHome

CITIES = ["oslo", "lima", "pune", "kiev", "york", "rome", "bern"]


@pytest.fixture
def hw(tmp_path: Path) -> StreamHome:
    return StreamHome(tmp_path)


def one_line_error(proc: object, message: str, hint: str) -> None:
    """Exit 1, an error line and a hint line on stderr, and no traceback."""
    err = proc.stderr  # type: ignore[attr-defined]
    assert proc.returncode == 1, err  # type: ignore[attr-defined]
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and message in lines[0], err
    assert lines[1].startswith("hint: ") and hint in lines[1], err


def table_rows(out: str, first: str) -> list[list[str]]:
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == [first]]
    assert all(len(line) <= 80 for line in out.splitlines() if line.split()[:1] == [first])
    return rows


def test_topics_create_list_describe_delete(hw: StreamHome) -> None:
    out = hw.cli("topics", "list", check=True).stdout
    assert out.startswith("no topics on embedded log in ")

    out = hw.cli("topics", "create", "houses", "-p", "3", "--retention-ms", "86400000", check=True).stdout
    assert "created topic houses: 3 partition(s), retention.ms 86,400,000" in out
    broker = hw.broker()
    producer = broker.producer()
    producer.produce_batch("houses", [b"{}"] * 10, partitions=[0] * 6 + [2] * 4)
    producer.flush()
    producer.close()
    broker.close()

    rows = table_rows(hw.cli("topics", "list", check=True).stdout, "houses")
    assert rows == [["houses", "3", "10", "10", *rows[0][4:]]] and rows[0][-1] in ("B", "KiB")

    out = hw.cli("topics", "describe", "houses", check=True).stdout
    assert "houses: 3 partition(s)" in out and "retention.ms=86400000" in out
    partitions = [line.split()[:4] for line in out.splitlines() if re.match(r"^\s+\d\s", line)]
    assert partitions == [["0", "0", "6", "6"], ["1", "0", "0", "0"], ["2", "0", "4", "4"]]

    one_line_error(hw.cli("topics", "create", "houses"), "topic 'houses' already exists", "delete it first")
    one_line_error(hw.cli("topics", "delete", "houses"), "not deleted", "--yes")
    assert hw.cli("topics", "delete", "houses", input="n\n").returncode == 1
    assert "houses" in hw.cli("topics", "list", check=True).stdout
    assert "deleted topic houses" in hw.cli("topics", "delete", "houses", input="y\n", check=True).stdout

    hw.cli("topics", "create", "other", check=True)
    assert "deleted topic other" in hw.cli("topics", "delete", "other", "--yes", check=True).stdout
    assert hw.cli("topics", "list", check=True).stdout.startswith("no topics")


def test_unknown_topics_and_bad_names_are_one_line_errors(hw: StreamHome) -> None:
    hw.cli("topics", "create", "houses", check=True)
    for command in (("describe", "hoses"), ("tail", "hoses"), ("delete", "hoses", "--yes")):
        one_line_error(hw.cli("topics", *command), "topic 'hoses' does not exist", "houses")
    one_line_error(hw.cli("topics", "create", "bad/name"), "invalid topic name", "letters, digits")


def test_tail_shows_the_newest_records_with_keys_headers_and_times(hw: StreamHome) -> None:
    broker = hw.broker()
    broker.create_topic("events", 2)
    producer = broker.producer()
    base = int(dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)
    for i in range(6):
        producer.produce("events", b'{"n": %d}' % i, b"user-%d" % i, partition=i % 2, timestamp_ms=base + i)
    producer.produce("events", b"\x00\xffraw", None, partition=0, timestamp_ms=base + 6,
                     headers=(("trace", b"t-1"), ("blob", b"\x01\x02")))
    producer.flush()
    producer.close()
    broker.close()

    lines = hw.cli("topics", "tail", "events", "-n", "3", check=True).stdout.splitlines()
    assert lines == [
        '0:2  2024-05-01 12:00:00.004  key=user-4  {"n": 4}',
        '1:2  2024-05-01 12:00:00.005  key=user-5  {"n": 5}',
        "0:3  2024-05-01 12:00:00.006  key=(none)  0x00ff726177  headers: trace=t-1, blob=0x0102",
    ]
    everything = hw.cli("topics", "tail", "events", "-n", "100", check=True).stdout.splitlines()
    assert [line.split()[0] for line in everything] == ["0:0", "1:0", "0:1", "1:1", "0:2", "1:2", "0:3"]


def test_groups_describe_shows_lag_per_partition(hw: StreamHome) -> None:
    broker = hw.broker()
    broker.create_topic("orders", 3)
    producer = broker.producer()
    producer.produce_batch("orders", [b"{}"] * 90, partitions=[0] * 40 + [1] * 30 + [2] * 20)
    producer.flush()
    producer.close()
    consumer = broker.consumer("billing")
    consumer.assign([TopicPartition("orders", 0), TopicPartition("orders", 1)])
    consumer.commit({TopicPartition("orders", 0): 40, TopicPartition("orders", 1): 10})
    consumer.close()
    broker.close()

    out = hw.cli("groups", "describe", "billing", check=True).stdout
    rows = table_rows(out, "orders")
    assert [r[:5] for r in rows] == [["orders", "0", "40", "40", "0"], ["orders", "1", "10", "30", "20"],
                                     ["orders", "2", "-", "20", "20"]]
    assert len(rows[0]) == 5  # no bar without lag; the others have one
    assert len(rows[1]) == len(rows[2]) == 6 and rows[1][5] == rows[2][5]
    assert "total lag: 40 record(s) on 3 partition(s)" in out

    one_line_error(hw.cli("groups", "describe", "billling"), "group 'billling' has committed no offsets", "--topic")
    out = hw.cli("groups", "describe", "newcomer", "--topic", "orders", check=True).stdout
    assert "total lag: 90 record(s)" in out


def houses(n: int) -> pl.DataFrame:
    return pl.DataFrame({
        "id": list(range(n)),
        "city": [CITIES[i % len(CITIES)] for i in range(n)],
        "price": [None if i % 5 == 0 else 100.0 * i for i in range(n)],
        "listed": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 30) for i in range(n)],
    })


FINAL = re.compile(r"^sent ([\d,]+) rows to (\S+) in [\d.]+ s \(([\d,]+|-) rows/s\)")


def test_replay_csv_keyed_into_a_new_topic_with_partitions(hw: StreamHome) -> None:
    houses(1_500).write_csv(hw.root / "houses.csv")
    proc = hw.cli("stream", "replay", "houses.csv", "--topic", "houses", "--key", "city", "--partitions", "3",
                  check=True)
    match = FINAL.match(proc.stdout.strip())
    assert match and match.group(1, 2) == ("1,500", "houses"), proc.stdout
    assert proc.stdout.count("\n") == 1  # no progress bar in a pipe: just the final line
    records = hw.records("houses")
    assert len(records) == 1_500
    assert {v["id"] for _, _, _, v in records} == set(range(1_500))
    for partition, _offset, key, value in records:
        assert key == value["city"].encode() and partition == partition_for(key, 3)
    for p in range(3):
        ids = [v["id"] for part, _, _, v in records if part == p]
        assert ids == sorted(ids)  # file order within a partition
    first = next(v for _, _, _, v in records if v["id"] == 0)
    assert first == {"id": 0, "city": "oslo", "price": None, "listed": "2024-01-01"}

    one_line_error(hw.cli("stream", "replay", "houses.csv", "--topic", "houses", "-p", "2"),
                   "exists with 3 partition(s), not 2", "leave out --partitions")


def test_replay_parquet_at_a_rate_and_jsonl_in_a_loop(hw: StreamHome) -> None:
    houses(400).write_parquet(hw.root / "houses.parquet")
    proc = hw.cli("stream", "replay", "houses.parquet", "--topic", "paced", "--rate", "20k/s", "--limit", "250",
                  check=True)
    assert FINAL.match(proc.stdout.strip()) and "sent 250 rows to paced" in proc.stdout
    assert [v["id"] for _, _, _, v in hw.records("paced")] == list(range(250))

    houses(120).write_ndjson(hw.root / "houses.jsonl")
    proc = hw.cli("stream", "replay", "houses.jsonl", "-t", "looped", "--loop", "--limit", "300", check=True)
    assert "sent 300 rows to looped" in proc.stdout and "3 passes over the file" in proc.stdout
    assert [v["id"] for _, _, _, v in hw.records("looped")] == [*range(120), *range(120), *range(60)]


def test_replay_errors_are_one_line(hw: StreamHome) -> None:
    houses(3).write_csv(hw.root / "houses.csv")
    one_line_error(hw.cli("stream", "replay", "houses.csv", "-t", "t", "--key", "cty"),
                   "no column 'cty'", "did you mean 'city'?")
    one_line_error(hw.cli("stream", "replay", "nothere.csv", "-t", "t"), "no file nothere.csv", "CSV, Parquet")
    one_line_error(hw.cli("stream", "replay", "houses.csv", "-t", "t", "--rate", "fast"),
                   "cannot read the rate 'fast'", "2.5k/s")


def test_tail_follow_prints_new_records_until_sigterm(hw: StreamHome) -> None:
    broker = hw.broker()
    broker.create_topic("live", 1)
    producer = broker.producer()
    producer.produce("live", b"old", partition=0)
    producer.flush()
    proc = hw.popen("topics", "tail", "live", "-n", "1", "--follow")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[-1] == "old"
        for value in (b"new-1", b"new-2"):
            producer.produce("live", value, partition=0)
            producer.flush()
            assert proc.stdout.readline().split()[-1] == value.decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        producer.close()
        broker.close()
