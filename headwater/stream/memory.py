"""MemoryBroker: an in-process fake of the broker port, for fast unit tests of stream apps.

Same behaviour as the embedded log and Kafka where the contract suite checks it (offsets,
murmur2 partitioning, groups with committed offsets, rebalance callbacks, admin and its
errors), but nothing leaves the process: groups are shared by consumers of one
``MemoryBroker`` (threads or interleaved calls in one thread). Retention settings are
recorded in the topic config and not enforced. Consumer and producer ``config`` is accepted
and ignored, so code written for Kafka settings runs unchanged.

Rebalancing is cooperative, as in the embedded log: when the member set changes, each
member gives up (``on_revoke``) the partitions it no longer owns at its next ``poll_batch``,
and a member takes (``on_assign``) a partition only once nobody else holds it, so two
members never read one partition at the same time.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from headwater.errors import UserError
from headwater.stream._common import (
    KeyPartitioner,
    check_columns,
    now_ms,
    range_assign,
    validate_offset_reset,
    validate_partitions,
    validate_topic_name,
)
from headwater.stream.broker import (
    BrokerError,
    Headers,
    PartitionLag,
    RebalanceCallback,
    RecordBatch,
    TopicExistsError,
    TopicInfo,
    TopicNotFoundError,
    TopicPartition,
)


@dataclass
class _Partition:
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    headers: list[Headers] = field(default_factory=list)


@dataclass
class _Topic:
    partitions: list[_Partition]
    config: dict[str, str]


@dataclass
class _Group:
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)  # member id -> topics
    owners: dict[TopicPartition, str] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)


class MemoryBroker:
    """Topics in memory; see the module docstring. Thread-safe."""

    def __init__(self, *, auto_create_topics: bool = True) -> None:
        self.auto_create_topics = auto_create_topics
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)

    # -- admin -----------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        exist_ok: bool = False,
    ) -> None:
        validate_topic_name(name)
        validate_partitions(partitions)
        with self._cond:
            if name in self._topics:
                if exist_ok:
                    return
                raise TopicExistsError(f"topic {name!r} already exists", hint="pick another name or delete it first")
            config = {}
            if retention_ms is not None:
                config["retention.ms"] = str(retention_ms)
            if retention_bytes is not None:
                config["retention.bytes"] = str(retention_bytes)
            self._topics[name] = _Topic([_Partition() for _ in range(partitions)], config)
            self._cond.notify_all()

    def list_topics(self) -> list[str]:
        with self._cond:
            return sorted(self._topics)

    def describe_topic(self, name: str) -> TopicInfo:
        with self._cond:
            topic = self._topic(name)
            ends = {p: len(part.values) for p, part in enumerate(topic.partitions)}
            return TopicInfo(name, len(topic.partitions), dict.fromkeys(ends, 0), ends, dict(topic.config))

    def delete_topic(self, name: str) -> None:
        with self._cond:
            self._topic(name)
            del self._topics[name]
            for group in self._groups.values():
                for tp in [tp for tp in group.committed if tp.topic == name]:
                    del group.committed[tp]
            self._cond.notify_all()

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        with self._cond:
            return {tp: len(self._partition(tp).values) for tp in partitions}

    def group_lag(self, group_id: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        with self._cond:
            group = self._groups.get(group_id, _Group())
            names = list(topics) if topics is not None else sorted({tp.topic for tp in group.committed})
            out = []
            for name in names:
                topic = self._topic(name)
                for p, part in enumerate(topic.partitions):
                    tp = TopicPartition(name, p)
                    out.append(PartitionLag(tp, group.committed.get(tp), len(part.values)))
            return out

    def producer(self, **config: object) -> MemoryProducer:
        return MemoryProducer(self)

    def consumer(
        self, group_id: str | None = None, *, auto_offset_reset: str = "earliest", **config: object
    ) -> MemoryConsumer:
        validate_offset_reset(auto_offset_reset)
        return MemoryConsumer(self, group_id, auto_offset_reset)

    def close(self) -> None:
        """Nothing to release; topics stay readable for the test that owns the broker."""

    # -- internals used by producers and consumers ------------------------------------

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise TopicNotFoundError(
                f"topic {name!r} does not exist", hint=f"create it first; known topics: {sorted(self._topics)}"
            )
        return topic

    def _partition(self, tp: TopicPartition) -> _Partition:
        topic = self._topic(tp.topic)
        if not 0 <= tp.partition < len(topic.partitions):
            raise UserError(f"{tp} does not exist: topic {tp.topic!r} has {len(topic.partitions)} partitions")
        return topic.partitions[tp.partition]

    def _topic_for_produce(self, name: str) -> _Topic:
        if name not in self._topics and self.auto_create_topics:
            self.create_topic(name, 1, exist_ok=True)
        return self._topic(name)


class MemoryProducer:
    """Appends straight into the broker's lists; ``flush`` has nothing left to do."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._partitioner = KeyPartitioner()
        self._closed = False

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> None:
        self.produce_batch(
            topic,
            [value],
            [key],
            partitions=None if partition is None else [partition],
            timestamps=None if timestamp_ms is None else [timestamp_ms],
            headers=[tuple(headers)] if headers else None,
        )

    def produce_batch(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None = None,
        *,
        partitions: Sequence[int] | None = None,
        timestamps: Sequence[int] | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        if self._closed:
            raise BrokerError("the producer is closed")
        n = len(values)
        check_columns(n, keys=keys, partitions=partitions, timestamps=timestamps, headers=headers)
        ts_default = now_ms()
        with self._broker._cond:
            t = self._broker._topic_for_produce(topic)
            count = len(t.partitions)
            if partitions is None and keys is not None and n > 1:
                # murmur2 of the whole batch in one numpy pass (see KeyPartitioner.assign).
                partitions = self._partitioner.assign(keys, count).tolist()
            for i in range(n):
                key = keys[i] if keys is not None else None
                p = partitions[i] if partitions is not None else self._partitioner.partition(key, count)
                if not 0 <= p < count:
                    raise UserError(f"partition {p} does not exist: topic {topic!r} has {count} partitions")
                part = t.partitions[p]
                part.keys.append(key)
                part.values.append(values[i])
                part.timestamps.append(timestamps[i] if timestamps is not None else ts_default)
                part.headers.append(tuple(headers[i]) if headers is not None else ())
            self._broker._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        if self._closed:
            raise BrokerError("the producer is closed")

    def close(self) -> None:
        self._closed = True


class MemoryConsumer:
    """A reader of a :class:`MemoryBroker`; a group member after ``subscribe``."""

    def __init__(self, broker: MemoryBroker, group_id: str | None, auto_offset_reset: str) -> None:
        self._broker = broker
        self._group_id = group_id
        self._reset = auto_offset_reset
        self._member_id = f"member-{next(broker._ids)}"
        self._topics: tuple[str, ...] = ()
        self._subscribed = False
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._rotation = 0
        self._closed = False

    # -- membership ----------------------------------------------------------------

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        group = self._require_group("subscribe")
        for name in topics:
            validate_topic_name(name)
        with self._broker._cond:
            self._topics = tuple(topics)
            self._subscribed = True
            self._on_assign, self._on_revoke = on_assign, on_revoke
            group.members[self._member_id] = self._topics

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        with self._broker._cond:
            for tp in partitions:
                self._broker._partition(tp)
            self._positions = {tp: self._start_offset(tp) for tp in partitions}

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._positions)

    def _require_group(self, action: str) -> _Group:
        if self._closed:
            raise BrokerError("the consumer is closed")
        if self._group_id is None:
            raise UserError(f"{action} needs a consumer group", hint="create the consumer with group_id=...")
        return self._broker._groups.setdefault(self._group_id, _Group())

    def _rebalance(self) -> None:
        """Give up partitions no longer ours, then take free ones that are (see module docstring)."""
        if not self._subscribed:
            return
        broker = self._broker
        with broker._cond:
            group = broker._groups[self._group_id]  # type: ignore[index]
            counts = {name: len(t.partitions) for name, t in broker._topics.items()}
            target = set(range_assign(group.members, counts).get(self._member_id, []))
            lost = sorted(tp for tp in self._positions if tp not in target)
        if lost:
            if self._on_revoke is not None:
                self._on_revoke(lost)
            with broker._cond:
                for tp in lost:
                    self._positions.pop(tp, None)
                    if group.owners.get(tp) == self._member_id:
                        del group.owners[tp]
                broker._cond.notify_all()
        with broker._cond:
            gained = []
            for tp in sorted(target - set(self._positions)):
                owner = group.owners.get(tp)
                if owner is None or owner not in group.members:
                    group.owners[tp] = self._member_id
                    self._positions[tp] = self._start_offset(tp)
                    gained.append(tp)
        if gained and self._on_assign is not None:
            self._on_assign(gained)

    def _start_offset(self, tp: TopicPartition) -> int:
        committed = None
        if self._group_id is not None:
            committed = self._broker._groups.get(self._group_id, _Group()).committed.get(tp)
        end = len(self._broker._partition(tp).values)
        if committed is not None:
            return min(committed, end)
        return 0 if self._reset == "earliest" else end

    # -- reading ---------------------------------------------------------------------

    def poll_batch(self, max_records: int = 10_000, timeout: float = 1.0) -> list[RecordBatch]:
        if self._closed:
            raise BrokerError("the consumer is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._rebalance()
            with self._broker._cond:
                batches = self._read(max_records)
                remaining = deadline - time.monotonic()
                if batches or remaining <= 0:
                    return batches
                # Woken by produce, topic changes and partitions released by other members.
                self._broker._cond.wait(min(remaining, 0.05))

    def _read(self, max_records: int) -> list[RecordBatch]:
        tps = sorted(self._positions)
        if not tps:
            return []
        self._rotation = (self._rotation + 1) % len(tps)
        out = []
        budget = max_records
        for tp in tps[self._rotation :] + tps[: self._rotation]:
            if budget <= 0:
                break
            topic = self._broker._topics.get(tp.topic)
            if topic is None or tp.partition >= len(topic.partitions):
                continue
            part = topic.partitions[tp.partition]
            start = self._positions[tp]
            stop = min(len(part.values), start + budget)
            if stop <= start:
                continue
            headers = part.headers[start:stop]
            batch = RecordBatch(
                tp.topic,
                tp.partition,
                list(range(start, stop)),
                part.keys[start:stop],
                part.values[start:stop],
                part.timestamps[start:stop],
                headers if any(headers) else [],
            )
            out.append(batch)
            self._positions[tp] = stop
            budget -= stop - start
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        group = self._require_group("commit")
        with self._broker._cond:
            for tp, offset in offsets.items():
                self._broker._partition(tp)
                group.committed[tp] = int(offset)

    def committed(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        group = self._require_group("committed")
        with self._broker._cond:
            return {tp: group.committed.get(tp) for tp in partitions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._positions:
            raise UserError(
                f"cannot seek {tp}: it is not assigned to this consumer", hint=f"assigned: {self.assignment()}"
            )
        with self._broker._cond:
            end = len(self._broker._partition(tp).values)
            self._positions[tp] = max(0, min(int(offset), end))

    def position(self, tp: TopicPartition) -> int:
        if tp not in self._positions:
            raise UserError(f"{tp} is not assigned to this consumer", hint=f"assigned: {self.assignment()}")
        return self._positions[tp]

    def close(self) -> None:
        """Leave the group; the partitions are released at once for the other members."""
        if self._closed:
            return
        if self._subscribed and self._positions and self._on_revoke is not None:
            # As Kafka clients do on close: the app's last chance to commit what it processed.
            self._on_revoke(sorted(self._positions))
        self._closed = True
        with self._broker._cond:
            if self._group_id is not None and self._subscribed:
                group = self._broker._groups[self._group_id]
                group.members.pop(self._member_id, None)
                for tp in [tp for tp, m in group.owners.items() if m == self._member_id]:
                    del group.owners[tp]
            self._positions.clear()
            self._broker._cond.notify_all()
