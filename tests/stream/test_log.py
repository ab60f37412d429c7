"""The embedded log beyond the contract: torn tails, kill -9, concurrent processes, retention, eviction.

Crash tests run real child processes (``python -c``) on the same folder and kill them
with SIGKILL; the log must open, keep every record a ``flush()`` acknowledged, and take
new appends.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from headwater.errors import UserError
from headwater.stream.broker import BrokerError, TopicNotFoundError, TopicPartition
from headwater.stream.log import EmbeddedBroker
from headwater.stream.log.partition import list_segments, scan_file, segment_name
from tests.stream.brokertools import drain, poll_until

TP0 = 0


def _broker(tmp_path: Path, **kw: object) -> EmbeddedBroker:
    return EmbeddedBroker(tmp_path / "topics", session_timeout=1.0, **kw)  # type: ignore[arg-type]


def _segment(broker: EmbeddedBroker, topic: str, partition: int = 0) -> Path:
    d = broker.partition_dir(topic, partition)
    return Path(d) / segment_name(list_segments(d)[-1])


def _clean(path: Path) -> bool:
    """The segment holds only whole, valid batches."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        end, _next, stop = scan_file(fd, 0, size)
        return stop == "end" and end == size
    finally:
        os.close(fd)


def _read_all(broker: EmbeddedBroker, topic: str, count: int, partitions: int = 1) -> list:
    consumer = broker.consumer()
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    rows = drain(consumer, count, timeout=10)
    # Nothing beyond what is expected.
    rows += drain(consumer, 1, timeout=0.2)
    consumer.close()
    return rows


def _child(code: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _start(*procs: subprocess.Popen[str]) -> None:
    """Wait until each appender is ready, then let them all go at once."""
    for proc in procs:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# -- torn tails, written by hand -----------------------------------------------------


def test_a_torn_tail_is_invisible_to_readers_and_cut_by_the_next_writer(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    p = broker.producer()
    p.produce_batch("t", [b"a%d" % i for i in range(10)])
    p.flush()
    seg = _segment(broker, "t")
    whole = seg.read_bytes()
    with open(seg, "ab") as f:  # what a writer killed mid-write leaves: half a batch
        f.write(whole[: len(whole) // 2])

    assert [r[4] for r in _read_all(broker, "t", 10)] == [b"a%d" % i for i in range(10)]
    assert broker.end_offsets([TopicPartition("t", 0)]) == {TopicPartition("t", 0): 10}
    assert not _clean(seg)

    q = broker.producer()
    q.produce_batch("t", [b"b%d" % i for i in range(5)])
    q.flush()
    assert _clean(seg)
    rows = _read_all(broker, "t", 15)
    assert [r[2] for r in rows] == list(range(15))
    assert [r[4] for r in rows[10:]] == [b"b%d" % i for i in range(5)]


def test_a_last_batch_failing_its_crc_is_treated_as_torn(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    p = broker.producer()
    p.produce_batch("t", [b"first"] * 3)
    p.flush()
    p.produce_batch("t", [b"second"] * 3)
    p.flush()
    seg = _segment(broker, "t")
    raw = bytearray(seg.read_bytes())
    raw[-2] ^= 0xFF
    seg.write_bytes(bytes(raw))

    assert [r[4] for r in _read_all(broker, "t", 3)] == [b"first"] * 3
    # As after a restart: a new writer finds the bad tail and cuts it before appending.
    q = broker.producer()
    q.produce("t", b"third")
    q.flush()
    rows = _read_all(broker, "t", 4)
    assert [(r[2], r[4]) for r in rows] == [(0, b"first"), (1, b"first"), (2, b"first"), (3, b"third")]


def test_corruption_before_the_tail_is_an_error_not_silence(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    p = broker.producer()
    for i in range(3):
        p.produce("t", b"record %d" % i)
        p.flush()
    seg = _segment(broker, "t")
    raw = bytearray(seg.read_bytes())
    raw[40] ^= 0xFF  # inside the first batch
    seg.write_bytes(bytes(raw))
    consumer = broker.consumer()
    consumer.assign([TopicPartition("t", 0)])
    with pytest.raises(BrokerError, match="corrupt"):
        consumer.poll_batch(10, timeout=0.2)
    consumer.close()


# -- crash tests with real processes --------------------------------------------------

_APPENDER = """
    import sys
    from headwater.stream.log import EmbeddedBroker
    broker = EmbeddedBroker(sys.argv[1], fsync="never")
    producer = broker.producer()
    tag, batch, total, i = sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    producer.produce("t-ready", tag)  # warm up (imports, files), then wait for the start signal
    producer.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    while total < 0 or i < total:
        n = batch if total < 0 else min(batch, total - i, 1 + (i * 7919) % batch)
        producer.produce_batch("t", [tag + b":%010d" % j for j in range(i, i + n)])
        producer.flush()
        i += n
        print(i, flush=True)
"""


@pytest.mark.slow
def test_a_producer_killed_mid_append_leaves_an_open_log_with_every_flushed_record(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    expected = 0
    for round_ in range(3):
        proc = _child(_APPENDER, broker.path, "w", 4000, -1, expected)
        _start(proc)
        assert proc.stdout is not None
        acked = 0
        while acked < expected + 40_000 + round_ * 4000:  # kill at a different point each round
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            acked = int(line)
        _kill(proc)

        rows = _read_all(broker, "t", acked)
        values = [r[4] for r in rows]
        # Every acknowledged record is there, whole and in order; a cut-off batch is gone entirely.
        assert len(values) >= acked
        assert len(values) % 4000 == 0
        assert values == [b"w:%010d" % j for j in range(len(values))]
        expected = len(values)
    # The log takes appends after the crashes, right after the last whole record.
    p = broker.producer()
    p.produce_batch("t", [b"after"] * 3)
    p.flush()
    assert _clean(_segment(broker, "t"))
    tail = _read_all(broker, "t", expected + 3)[expected:]
    assert [(r[2], r[4]) for r in tail] == [(expected + i, b"after") for i in range(3)]


_DIES_INSIDE_WRITE = """
    import os, signal, sys
    from headwater.stream.log import EmbeddedBroker, partition
    broker = EmbeddedBroker(sys.argv[1], fsync="never")
    producer = broker.producer()
    producer.produce_batch("t", [b"kept-%d" % i for i in range(1000)])
    producer.flush()
    print("acked", flush=True)

    def half_then_die(fd, data):
        # Fault injection: the process dies with only part of its batch in the file.
        os.write(fd, bytes(data)[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    partition._write_all = half_then_die
    producer.produce_batch("t", [b"lost-%d" % i for i in range(1000)])
    producer.flush()
"""


@pytest.mark.slow
def test_a_producer_killed_inside_its_write_leaves_a_torn_tail_that_is_cut(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    proc = _child(_DIES_INSIDE_WRITE, broker.path)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    seg = _segment(broker, "t")
    assert not _clean(seg)  # half a batch at the end

    assert [r[4] for r in _read_all(broker, "t", 1000)] == [b"kept-%d" % i for i in range(1000)]
    p = broker.producer()
    p.produce("t", b"next")
    p.flush()
    assert _clean(seg)
    rows = _read_all(broker, "t", 1001)
    assert (rows[-1][2], rows[-1][4]) == (1000, b"next")


@pytest.mark.slow
def test_two_processes_appending_to_one_partition_lose_nothing_and_interleave_whole_records(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    total = 50_000
    procs = [_child(_APPENDER, broker.path, tag, 300, total, 0) for tag in ("A", "B")]
    consumer = broker.consumer()
    consumer.assign([TopicPartition("t", 0)])
    _start(*procs)
    # Read while they write: lock-free readers see only whole batches, in offset order.
    rows = drain(consumer, 2 * total, timeout=60)
    consumer.close()
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert _read_all(broker, "t", 2 * total) == rows
    assert [r[2] for r in rows] == list(range(2 * total))
    for tag in (b"A", b"B"):
        mine = [r[4] for r in rows if r[4] is not None and r[4].startswith(tag + b":")]
        assert mine == [tag + b":%010d" % j for j in range(total)]
    # Both wrote while the other did: the batches are interleaved, not one run after the other.
    owners = [r[4][:1] for r in rows if r[4] is not None]
    switches = sum(1 for x, y in itertools.pairwise(owners) if x != y)
    assert switches > 1
    assert _clean(_segment(broker, "t"))


_COMMITTER = """
    import sys, time
    from headwater.stream.log import EmbeddedBroker
    broker = EmbeddedBroker(sys.argv[1], session_timeout=1.0)
    consumer = broker.consumer("g")
    consumer.subscribe(["t"])
    while True:
        for batch in consumer.poll_batch(100, timeout=0.5):
            time.sleep(0.002)  # "processing"
            consumer.commit({batch.tp: batch.next_offset})
            print("committed", batch.next_offset, flush=True)
"""


@pytest.mark.slow
def test_a_consumer_killed_mid_batch_is_resumed_from_its_last_commit(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    p = broker.producer()
    p.produce_batch("t", [b"%d" % i for i in range(5000)])
    p.flush()
    proc = _child(_COMMITTER, broker.path)
    assert proc.stdout is not None
    seen = 0
    while seen < 1500:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        seen = int(line.split()[1])
    _kill(proc)

    tp = TopicPartition("t", 0)
    consumer = broker.consumer("g")
    consumer.subscribe(["t"])
    rows: list[tuple[int, int]] = []  # (first offset, count) per batch

    def note(_c: object, batches: list) -> None:
        rows.extend((b.offsets[0], len(b)) for b in batches)

    assert poll_until([consumer], lambda: bool(rows) and sum(rows[-1]) == 5000, on_batch=note, timeout=15)
    committed = consumer.committed([tp])[tp]
    assert committed is not None and committed >= seen
    # The new member starts exactly at the dead one's last commit and reads on to the end.
    assert rows[0][0] == committed
    assert sum(n for _o, n in rows) == 5000 - committed
    consumer.close()


_MEMBER = """
    import sys
    from headwater.stream.log import EmbeddedBroker
    broker = EmbeddedBroker(sys.argv[1])
    consumer = broker.consumer("g", session_timeout=30.0, heartbeat_interval=0.2)
    consumer.subscribe(["t"])
    last = []
    while True:
        for batch in consumer.poll_batch(10, timeout=0.1):
            consumer.commit({batch.tp: batch.next_offset})
        if consumer.assignment() != last:
            last = consumer.assignment()
            print(len(last), flush=True)
"""


@pytest.mark.slow
def test_a_member_killed_with_sigkill_is_evicted_and_its_partitions_reassigned(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t", 4)
    p = broker.producer()
    p.produce_batch("t", [b"x"] * 400)
    p.flush()
    proc = _child(_MEMBER, broker.path)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "4", proc.stderr.read() if proc.stderr else ""

    # A session timeout far longer than the waits below: only the dead pid can get it evicted.
    me = broker.consumer("g", session_timeout=30.0, heartbeat_interval=0.2)
    me.subscribe(["t"])
    assert poll_until([me], lambda: len(me.assignment()) == 2, timeout=10), me.assignment()
    theirs = {TopicPartition("t", q) for q in range(4)} - set(me.assignment())
    _kill(proc)
    p.produce_batch("t", [b"later"] * 40, partitions=[q for q in range(4) for _ in range(10)])
    p.flush()
    got: dict[TopicPartition, int] = {}

    def first_offsets(_c: object, batches: list) -> None:
        for b in batches:
            got.setdefault(b.tp, b.offsets[0])

    took_over = poll_until(
        [me], lambda: len(me.assignment()) == 4 and theirs <= set(got), timeout=10, on_batch=first_offsets
    )
    assert took_over, (me.assignment(), got)
    # Its partitions continue from what it committed.
    committed = me.committed(sorted(theirs))
    assert {tp: got[tp] for tp in theirs} == committed
    me.close()


@pytest.mark.slow
def test_a_member_that_stops_polling_is_evicted_and_its_late_commit_refused(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t", 2)
    revoked: list[TopicPartition] = []
    stuck = broker.consumer("g", session_timeout=1.0, heartbeat_interval=0.1, max_poll_interval=0.2)
    stuck.subscribe(["t"], on_revoke=revoked.extend)
    assert poll_until([stuck], lambda: len(stuck.assignment()) == 2, timeout=10)

    other = broker.consumer("g", session_timeout=1.0, heartbeat_interval=0.1)
    other.subscribe(["t"])
    # `stuck` does not poll: its heartbeats stop after max_poll_interval, then it is evicted.
    assert poll_until([other], lambda: len(other.assignment()) == 2, timeout=10)
    with pytest.raises(BrokerError, match="no longer owns"):
        stuck.commit({TopicPartition("t", 0): 1})
    stuck.poll_batch(10, timeout=0.2)
    assert sorted(revoked) == [TopicPartition("t", 0), TopicPartition("t", 1)]
    stuck.close()
    other.close()


# -- retention -------------------------------------------------------------------------


def test_retention_by_size_deletes_whole_old_segments(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t", retention_bytes=8192, segment_bytes=2048)
    p = broker.producer()
    for i in range(200):
        p.produce_batch("t", [b"%05d" % i + b"." * 95] * 10)
        p.flush()
    tp = TopicPartition("t", 0)
    info = broker.describe_topic("t")
    assert info.end_offsets == {0: 2000}
    start = info.start_offsets[0]
    assert start > 0
    d = Path(broker.partition_dir("t", 0))
    kept = sum(f.stat().st_size for f in d.glob("*.log"))
    assert 8192 <= kept <= 8192 + 2048 + 2048
    rows = _read_all(broker, "t", 2000 - start)
    assert [r[2] for r in rows] == list(range(start, 2000))
    # A group whose committed offset was deleted restarts at the log start.
    c = broker.consumer("late")
    c.assign([tp])
    c.commit({tp: 5})
    c.close()
    c = broker.consumer("late")
    c.assign([tp])
    assert c.position(tp) == start
    c.close()


def test_retention_by_age_deletes_segments_not_written_for_longer(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t", retention_ms=60_000, segment_bytes=1024)
    p = broker.producer()
    for _ in range(30):
        p.produce_batch("t", [b"y" * 100] * 3)
        p.flush()
    d = broker.partition_dir("t", 0)
    segments = list_segments(d)
    assert len(segments) > 3
    assert broker.apply_retention() == {}  # all fresh
    old = time.time() - 120
    for base in segments:
        os.utime(os.path.join(d, segment_name(base)), (old, old))
    deleted = broker.apply_retention(["t"])
    assert deleted == {TopicPartition("t", 0): segments[:-1]}
    assert list_segments(d) == [segments[-1]]
    assert broker.describe_topic("t").start_offsets == {0: segments[-1]}
    assert len(_read_all(broker, "t", 90 - segments[-1])) == 90 - segments[-1]


# -- segments, index, big batches --------------------------------------------------------


def test_seek_anywhere_across_many_segments(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t", segment_bytes=8192)
    p = broker.producer()
    for i in range(0, 3000, 7):
        p.produce_batch("t", [b"%06d" % j + b"-" * 40 for j in range(i, min(i + 7, 3000))])
        p.flush()
    assert len(list_segments(broker.partition_dir("t", 0))) > 10
    tp = TopicPartition("t", 0)
    c = broker.consumer()
    c.assign([tp])
    for target in (0, 1, 6, 7, 999, 1500, 2222, 2999, 3000):
        c.seek(tp, target)
        rows = drain(c, min(5, 3000 - target), timeout=2, max_records=5)
        assert [r[2] for r in rows] == list(range(target, min(target + 5, 3000)))
        assert all(r[4] == b"%06d" % r[2] + b"-" * 40 for r in rows)
    c.close()


def test_batches_bigger_than_a_read_chunk(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    p = broker.producer()
    value = b"v" * 1000
    p.produce_batch("t", [value] * 20_000, [b"k%d" % i for i in range(20_000)])
    p.flush()
    tp = TopicPartition("t", 0)
    assert broker.end_offsets([tp]) == {tp: 20_000}
    c = broker.consumer()
    c.assign([tp])
    rows = drain(c, 20_000, timeout=20, max_records=3_000)
    assert [r[2] for r in rows] == list(range(20_000))
    assert rows[-1][3] == b"k19999"
    c.seek(tp, 17_000)
    assert drain(c, 1)[0][2] == 17_000
    c.close()


# -- options and errors ------------------------------------------------------------------


def test_producing_to_a_missing_topic_creates_it_unless_disabled(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    p = broker.producer()
    p.produce("auto", b"x")
    p.flush()
    assert broker.describe_topic("auto").partitions == 1
    strict = EmbeddedBroker(tmp_path / "strict", auto_create_topics=False)
    with pytest.raises(TopicNotFoundError, match="'nope'"):
        strict.producer().produce("nope", b"x")


def test_unknown_settings_are_named(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    with pytest.raises(UserError, match=r"linger\.ms"):
        broker.producer(**{"linger.ms": 5})
    with pytest.raises(UserError, match="sesion_timeout"):
        broker.consumer("g", sesion_timeout=1)
    with pytest.raises(UserError, match="fsync"):
        EmbeddedBroker(tmp_path / "x", fsync="sometimes")
    with pytest.raises(UserError, match="needs a consumer group"):
        broker.consumer().commit({TopicPartition("t", 0): 1})


def test_a_topic_deleted_under_a_producer_fails_its_flush_then_is_recreated(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t", 3)
    p = broker.producer()
    p.produce("t", b"one", partition=2)
    p.flush()
    p.produce("t", b"two", partition=2)
    broker.delete_topic("t")
    with pytest.raises(BrokerError, match="deleted"):
        p.flush()
    p.produce("t", b"three")
    p.flush()
    assert broker.describe_topic("t").partitions == 1
    assert [r[4] for r in _read_all(broker, "t", 1)] == [b"three"]


def test_committed_offsets_survive_a_new_broker_object(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t")
    tp = TopicPartition("t", 0)
    c = broker.consumer("g")
    c.assign([tp])
    c.commit({tp: 3})
    c.close()
    broker.close()
    again = _broker(tmp_path)
    assert [(lag.committed, lag.end_offset) for lag in again.group_lag("g")] == [(3, 0)]
    again.close()
