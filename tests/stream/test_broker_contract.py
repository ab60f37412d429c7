"""The broker contract: every test runs unchanged on the memory fake, the embedded log and Kafka.

Names are unique per test (the Kafka broker is shared by the session); waits are poll
loops with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from headwater.errors import UserError
from headwater.stream.broker import (
    Broker,
    Consumer,
    RecordBatch,
    TopicExistsError,
    TopicNotFoundError,
    TopicPartition,
)
from headwater.stream.partitioner import partition_for
from tests.stream.brokertools import drain, flatten, poll_until

Names = Callable[[str], str]


def test_round_trip_keeps_keys_values_headers_timestamps_and_none(broker: Broker, unique: Names) -> None:
    topic = unique("roundtrip")
    broker.create_topic(topic, 1)
    producer = broker.producer()
    before = int(time.time() * 1000)
    producer.produce(topic, b"v0", b"k0", timestamp_ms=1_600_000_000_000, headers=(("trace", b"abc"), ("n", b"1")))
    producer.produce(topic, None, b"tombstone")
    producer.produce(topic, b"no key")
    producer.produce_batch(
        topic,
        [b"b0", b"b1", None],
        [b"x", None, b"z"],
        timestamps=[1_700_000_000_001, 1_700_000_000_002, 1_700_000_000_003],
        headers=[(), (("h", b"\x00\xff"),), ()],
    )
    producer.flush(10)
    consumer = broker.consumer(unique("g"))
    consumer.assign([TopicPartition(topic, 0)])
    rows = drain(consumer, 6)
    consumer.close()
    producer.close()

    assert [r[2] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert [r[3] for r in rows] == [b"k0", b"tombstone", None, b"x", None, b"z"]
    assert [r[4] for r in rows] == [b"v0", None, b"no key", b"b0", b"b1", None]
    assert rows[0][6] == (("trace", b"abc"), ("n", b"1"))
    assert rows[4][6] == (("h", b"\x00\xff"),)
    assert [r[6] for r in rows if r[2] not in (0, 4)] == [()] * 4
    assert rows[0][5] == 1_600_000_000_000
    assert [r[5] for r in rows[3:]] == [1_700_000_000_001, 1_700_000_000_002, 1_700_000_000_003]
    # Records without a timestamp get the time they were produced.
    assert before - 60_000 <= rows[1][5] <= int(time.time() * 1000) + 60_000


def test_record_batches_are_columns_of_one_partition_in_offset_order(broker: Broker, unique: Names) -> None:
    topic = unique("order")
    broker.create_topic(topic, 3)
    producer = broker.producer()
    keys = [b"key-%d" % (i % 7) for i in range(600)]
    producer.produce_batch(topic, [b"%d" % i for i in range(600)], keys)
    producer.flush(10)
    consumer = broker.consumer(unique("g"))
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    batches: list[RecordBatch] = []
    deadline = time.monotonic() + 20
    while sum(len(b) for b in batches) < 600 and time.monotonic() < deadline:
        batches += consumer.poll_batch(250, timeout=0.2)
    consumer.close()

    assert sum(len(b) for b in batches) == 600
    for b in batches:
        assert len(b.offsets) == len(b.keys) == len(b.values) == len(b.timestamps)
        assert b.headers == [] or len(b.headers) == len(b)
        assert b.offsets == sorted(b.offsets)
        assert b.next_offset == b.offsets[-1] + 1
    rows = flatten(batches)
    for p in range(3):
        mine = [r for r in rows if r[1] == p]
        assert [r[2] for r in mine] == list(range(len(mine)))
        # Produce order is kept within the partition.
        seqs = [int(r[4]) for r in mine]  # type: ignore[arg-type]
        assert seqs == sorted(seqs)


def test_keys_go_to_the_partition_a_kafka_producer_picks(broker: Broker, unique: Names) -> None:
    topic = unique("murmur")
    broker.create_topic(topic, 5)
    producer = broker.producer()
    keys = [b"house-%d" % i for i in range(40)] + [b"", b"\x00\x01\x02", "ключ".encode()]
    producer.produce_batch(topic, [b"batch"] * len(keys), keys)
    for key in keys:
        producer.produce(topic, b"single", key)
    producer.flush(10)
    consumer = broker.consumer(unique("g"))
    consumer.assign([TopicPartition(topic, p) for p in range(5)])
    rows = drain(consumer, 2 * len(keys))
    consumer.close()

    assert len(rows) == 2 * len(keys)
    seen: dict[bytes, set[int]] = {}
    for _t, partition, _o, key, _v, _ts, _h in rows:
        assert key is not None
        seen.setdefault(key, set()).add(partition)
    assert seen == {key: {partition_for(key, 5)} for key in keys}
    assert len({p for ps in seen.values() for p in ps}) > 1


def test_explicit_partition_and_positions_and_seek(broker: Broker, unique: Names) -> None:
    topic = unique("seek")
    broker.create_topic(topic, 2)
    producer = broker.producer()
    producer.produce_batch(topic, [b"%d" % i for i in range(20)], partitions=[1] * 20)
    producer.produce(topic, b"p0", partition=0)
    producer.flush(10)
    tp = TopicPartition(topic, 1)
    assert broker.end_offsets([tp, TopicPartition(topic, 0)]) == {tp: 20, TopicPartition(topic, 0): 1}

    consumer = broker.consumer(unique("g"))
    consumer.assign([tp])
    assert consumer.assignment() == [tp]
    rows = drain(consumer, 20)
    assert [r[2] for r in rows] == list(range(20))
    assert [r[4] for r in rows] == [b"%d" % i for i in range(20)]
    assert consumer.position(tp) == 20

    consumer.seek(tp, 5)
    assert consumer.position(tp) == 5
    again = drain(consumer, 15)
    assert [r[2] for r in again] == list(range(5, 20))
    consumer.seek(tp, 18)
    assert [r[4] for r in drain(consumer, 2)] == [b"18", b"19"]
    consumer.close()


def test_commit_and_committed_and_a_new_consumer_resumes_there(broker: Broker, unique: Names) -> None:
    topic, group = unique("commit"), unique("g")
    broker.create_topic(topic, 1)
    producer = broker.producer()
    producer.produce_batch(topic, [b"%d" % i for i in range(10)])
    producer.flush(10)
    tp = TopicPartition(topic, 0)

    first = broker.consumer(group)
    first.assign([tp])
    assert first.committed([tp]) == {tp: None}
    assert len(drain(first, 10)) == 10
    first.commit({tp: 7})
    assert first.committed([tp]) == {tp: 7}
    first.close()

    second = broker.consumer(group)
    second.assign([tp])
    rows = drain(second, 3)
    assert [r[2] for r in rows] == [7, 8, 9]
    assert second.committed([tp]) == {tp: 7}
    second.close()


def test_auto_offset_reset_earliest_and_latest(broker: Broker, unique: Names) -> None:
    topic = unique("reset")
    broker.create_topic(topic, 1)
    producer = broker.producer()
    producer.produce_batch(topic, [b"old-%d" % i for i in range(5)])
    producer.flush(10)
    tp = TopicPartition(topic, 0)

    earliest = broker.consumer(unique("g"), auto_offset_reset="earliest")
    earliest.assign([tp])
    assert [r[4] for r in drain(earliest, 5)] == [b"old-%d" % i for i in range(5)]
    earliest.close()

    latest = broker.consumer(unique("g"), auto_offset_reset="latest")
    latest.assign([tp])
    assert latest.poll_batch(100, timeout=0.5) == []
    producer.produce_batch(topic, [b"new-%d" % i for i in range(3)])
    producer.flush(10)
    rows = drain(latest, 3)
    assert [r[4] for r in rows] == [b"new-0", b"new-1", b"new-2"]
    assert [r[2] for r in rows] == [5, 6, 7]
    latest.close()
    producer.close()


def test_an_unknown_offset_reset_is_a_user_error(broker: Broker, unique: Names) -> None:
    with pytest.raises(UserError, match="auto_offset_reset"):
        broker.consumer(unique("g"), auto_offset_reset="middle")


def test_a_group_splits_partitions_then_one_member_takes_all_from_the_commits(
    broker: Broker, unique: Names
) -> None:
    topic, group = unique("group"), unique("g")
    broker.create_topic(topic, 4)
    producer = broker.producer()
    for p in range(4):
        producer.produce_batch(topic, [b"first-%d-%d" % (p, i) for i in range(10)], partitions=[p] * 10)
    producer.flush(10)

    assigned_to_b: list[TopicPartition] = []
    a = broker.consumer(group)
    b = broker.consumer(group)
    a.subscribe([topic])

    def commit_all(c: Consumer, batches: list[RecordBatch]) -> None:
        c.commit({bt.tp: bt.next_offset for bt in batches})

    # `a` alone gets every partition.
    assert poll_until([a], lambda: len(a.assignment()) == 4, on_batch=commit_all)
    b.subscribe([topic], on_assign=assigned_to_b.extend)
    split = poll_until(
        [a, b],
        lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2,
        on_batch=commit_all,
    )
    assert split, (a.assignment(), b.assignment())
    assert set(a.assignment()) | set(b.assignment()) == {TopicPartition(topic, p) for p in range(4)}
    # Every first-round record was read and committed by one member or the other.
    assert poll_until(
        [a, b],
        lambda: all(lag.lag == 0 for lag in broker.group_lag(group, [topic])),
        on_batch=commit_all,
    )

    for p in range(4):
        producer.produce_batch(topic, [b"second-%d-%d" % (p, i) for i in range(10)], partitions=[p] * 10)
    producer.flush(10)
    a_had = set(a.assignment())
    a.close()

    read: set[tuple[int, int, bytes | None]] = set()

    def commit_and_note(c: Consumer, batches: list[RecordBatch]) -> None:
        read.update((r[1], r[2], r[4]) for r in flatten(batches))
        commit_all(c, batches)

    assert poll_until([b], lambda: len(b.assignment()) == 4 and len(read) >= 40, on_batch=commit_and_note), (
        b.assignment(),
        len(read),
    )
    assert a_had <= set(assigned_to_b)
    # b resumed a's partitions from a's commits: every second-round record, no first-round one
    # (a rebalance may deliver a record twice, at least once is the contract; sets ignore that).
    assert read == {(p, 10 + i, b"second-%d-%d" % (p, i)) for p in range(4) for i in range(10)}
    b.close()
    producer.close()


def test_group_lag_per_partition(broker: Broker, unique: Names) -> None:
    topic, group = unique("lag"), unique("g")
    broker.create_topic(topic, 2)
    producer = broker.producer()
    producer.produce_batch(topic, [b"x"] * 10, partitions=[0] * 6 + [1] * 4)
    producer.flush(10)
    consumer = broker.consumer(group)
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    consumer.commit({TopicPartition(topic, 0): 4})
    lags = {lag.tp: lag for lag in broker.group_lag(group, [topic])}
    consumer.close()

    assert set(lags) == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
    assert (lags[TopicPartition(topic, 0)].committed, lags[TopicPartition(topic, 0)].end_offset) == (4, 6)
    assert lags[TopicPartition(topic, 0)].lag == 2
    assert lags[TopicPartition(topic, 1)].committed is None
    assert lags[TopicPartition(topic, 1)].end_offset == 4


def test_admin_create_list_describe_delete(broker: Broker, unique: Names) -> None:
    topic = unique("admin")
    broker.create_topic(topic, 3, retention_ms=3_600_000, retention_bytes=1 << 30)
    assert topic in broker.list_topics()
    producer = broker.producer()
    producer.produce_batch(topic, [b"a", b"b", b"c"], partitions=[0, 0, 2])
    producer.flush(10)
    producer.close()

    info = broker.describe_topic(topic)
    assert info.name == topic
    assert info.partitions == 3
    assert info.start_offsets == {0: 0, 1: 0, 2: 0}
    assert info.end_offsets == {0: 2, 1: 0, 2: 1}

    with pytest.raises(TopicExistsError, match=topic):
        broker.create_topic(topic, 3)
    broker.create_topic(topic, 3, exist_ok=True)

    broker.delete_topic(topic)
    deadline = time.monotonic() + 10
    while topic in broker.list_topics() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert topic not in broker.list_topics()


def test_admin_errors_name_the_topic(broker: Broker, unique: Names) -> None:
    missing = unique("missing")
    with pytest.raises(TopicNotFoundError, match=missing):
        broker.describe_topic(missing)
    with pytest.raises(TopicNotFoundError, match=missing):
        broker.delete_topic(missing)
    for bad in ("", "has space", "slash/inside", "x" * 250, "..", "ünïcode"):
        with pytest.raises(UserError):
            broker.create_topic(bad, 1)
    with pytest.raises(UserError):
        broker.create_topic(unique("zero"), 0)
