"""LogProducer: buffers records per partition as columns, packs and appends them on flush.

``produce``/``produce_batch`` only extend per-partition lists (C-speed ``extend`` and
slicing); ``flush`` packs each partition's buffer into batches and appends them under
the partition lock. Once ``flush`` returns, the records are in the files: visible to
every process and safe from a ``kill -9`` of this one (the page cache belongs to the
kernel); fsync, per the ``fsync`` setting, is about power cuts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING

from headwater.errors import UserError
from headwater.stream._common import KeyPartitioner, check_columns, now_ms, validate_topic_name
from headwater.stream.broker import BrokerError, Headers, TopicNotFoundError, TopicPartition
from headwater.stream.log import segment
from headwater.stream.log.partition import PartitionGoneError, PartitionWriter

if TYPE_CHECKING:
    from headwater.stream.log.broker import EmbeddedBroker

PRODUCER_SETTINGS = ("fsync", "fsync_interval", "max_buffered_records")


@dataclass(slots=True)
class _Buffer:
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    headers: list[Headers] | None = None  # None until a record has headers


def _pick(column: Sequence[object], idx: Sequence[int]) -> list:  # type: ignore[type-arg]
    if isinstance(idx, range):
        return list(column[idx.start : idx.stop])
    if len(idx) == 1:
        return [column[idx[0]]]
    return list(itemgetter(*idx)(column))


class LogProducer:
    """Writes to an :class:`EmbeddedBroker`'s topics. Not thread-safe: one per thread."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        *,
        fsync: str,
        fsync_interval: float,
        max_buffered_records: int = 500_000,
    ) -> None:
        self._broker = broker
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._max_buffered = max_buffered_records
        self._buffered = 0
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self._writers: dict[TopicPartition, PartitionWriter] = {}
        self._partition_counts: dict[str, int] = {}
        self._partitioner = KeyPartitioner()
        self._closed = False

    def _partitions(self, topic: str) -> int:
        n = self._partition_counts.get(topic)
        if n is None:
            try:
                n = self._broker.topic_meta(topic).partitions
            except TopicNotFoundError:
                if not self._broker.auto_create_topics:
                    raise
                validate_topic_name(topic)
                self._broker.create_topic(topic, 1, exist_ok=True)
                n = self._broker.topic_meta(topic).partitions
            self._partition_counts[topic] = n
        return n

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
        """Queue one record (see the port); the partition comes from murmur2(key) unless given."""
        if self._closed:
            raise BrokerError("the producer is closed")
        n = self._partitions(topic)
        if partition is None:
            partition = self._partitioner.partition(key, n)
        elif not 0 <= partition < n:
            raise UserError(f"partition {partition} does not exist: topic {topic!r} has {n} partition(s)")
        buf = self._buffer(TopicPartition(topic, partition))
        buf.keys.append(key)
        buf.values.append(value)
        buf.timestamps.append(now_ms() if timestamp_ms is None else timestamp_ms)
        if headers or buf.headers is not None:
            if buf.headers is None:
                buf.headers = [()] * (len(buf.values) - 1)
            buf.headers.append(tuple(headers))
        self._buffered += 1
        if self._buffered >= self._max_buffered:
            self.flush()

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
        """Queue many records at once: the fast path."""
        if self._closed:
            raise BrokerError("the producer is closed")
        total = len(values)
        check_columns(total, keys=keys, partitions=partitions, timestamps=timestamps, headers=headers)
        if not total:
            return
        n = self._partitions(topic)
        split: dict[int, Sequence[int]]
        if partitions is not None:
            bad = [p for p in set(partitions) if not 0 <= p < n]
            if bad:
                raise UserError(f"partition(s) {sorted(bad)} do not exist: topic {topic!r} has {n} partition(s)")
            groups: dict[int, list[int]] = {}
            for i, p in enumerate(partitions):
                groups.setdefault(p, []).append(i)
            split = dict(groups)
        else:
            split = self._partitioner.split(total, keys, n)
        ts_now = now_ms() if timestamps is None else 0
        if headers is not None and not any(headers):
            headers = None
        for p, idx in split.items():
            buf = self._buffer(TopicPartition(topic, p))
            count = len(idx)
            before = len(buf.values)
            buf.values += _pick(values, idx)
            buf.keys += _pick(keys, idx) if keys is not None else [None] * count
            buf.timestamps += _pick(timestamps, idx) if timestamps is not None else [ts_now] * count
            if headers is not None:
                if buf.headers is None:
                    buf.headers = [()] * before
                buf.headers += [tuple(h) for h in _pick(headers, idx)]
            elif buf.headers is not None:
                buf.headers += [()] * count
        self._buffered += total
        if self._buffered >= self._max_buffered:
            self.flush()

    def _buffer(self, tp: TopicPartition) -> _Buffer:
        buf = self._buffers.get(tp)
        if buf is None:
            buf = self._buffers[tp] = _Buffer()
        return buf

    def flush(self, timeout: float | None = None) -> None:
        """Append every buffered record; on return they are visible and survive our death.

        ``timeout`` is accepted for the port; appends are synchronous file writes.
        """
        if self._closed:
            raise BrokerError("the producer is closed")
        step = segment.MAX_BATCH_RECORDS
        for tp in list(self._buffers):
            buf = self._buffers[tp]
            bodies = [
                segment.pack(
                    buf.values[i : i + step],
                    buf.keys[i : i + step],
                    buf.timestamps[i : i + step],
                    None if buf.headers is None else buf.headers[i : i + step],
                )
                for i in range(0, len(buf.values), step)
            ]
            try:
                self._writer(tp).append(bodies)
            except PartitionGoneError:
                del self._buffers[tp]
                self._buffered -= len(buf.values)
                self._forget(tp.topic)
                raise BrokerError(
                    f"topic {tp.topic!r} was deleted while {len(buf.values)} record(s) for {tp} were buffered; "
                    "they were not written",
                    hint="produce them again (the topic is auto-created if the broker allows it)",
                ) from None
            except OSError as exc:
                # The buffer stays: a later flush retries it (the writer cuts any partial write).
                raise BrokerError(f"appending to {tp} in {self._broker.path} failed: {exc}") from exc
            del self._buffers[tp]
            self._buffered -= len(buf.values)

    def _writer(self, tp: TopicPartition) -> PartitionWriter:
        w = self._writers.get(tp)
        if w is None:
            meta = self._broker.topic_meta(tp.topic)
            w = self._writers[tp] = PartitionWriter(
                self._broker.partition_dir(tp.topic, tp.partition),
                meta.retention,
                fsync=self._fsync,
                fsync_interval=self._fsync_interval,
            )
        return w

    def _forget(self, topic: str) -> None:
        self._partition_counts.pop(topic, None)
        for tp in [tp for tp in self._writers if tp.topic == topic]:
            self._writers.pop(tp).close()

    def close(self) -> None:
        """Flush what is buffered, then release the files."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            for w in self._writers.values():
                w.close()
            self._writers.clear()
