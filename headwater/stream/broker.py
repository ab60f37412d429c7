"""The broker port: topics, producers, consumers and admin, for the embedded log and Kafka.

Records travel in **columnar batches**, never one Python object per record on the hot
path: a consumer returns one :class:`RecordBatch` per partition (parallel lists of
offsets, keys, values, timestamps, headers), and a producer accepts whole columns.
That is what lets a stream app decode a micro-batch straight into a frame.

Offsets follow Kafka: a committed offset is the offset of the *next* record to read.

Delivery protocol of a consumer in a group (what a stream app relies on):

1. ``poll_batch`` returns records after the group's committed offsets (or the
   ``auto_offset_reset`` end when none is committed), in offset order per partition.
2. Nothing is committed implicitly: the app calls ``commit(offsets)`` after the
   outputs of those records are flushed (at-least-once).
3. On a rebalance, ``on_revoke`` is called before partitions are taken away (the app
   flushes and commits there) and ``on_assign`` after new ones are given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from headwater.errors import InfrastructureError, UserError

Headers = tuple[tuple[str, bytes], ...]


class BrokerError(InfrastructureError):
    """The broker failed: I/O error, unreachable cluster, delivery failure."""


class TopicNotFoundError(UserError):
    """A topic that does not exist was named."""


class TopicExistsError(UserError):
    """A topic that already exists was created again."""


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(slots=True)
class RecordBatch:
    """Records of one partition, in offset order, as parallel columns.

    ``headers`` is either empty (no record has headers) or as long as ``values``.
    ``timestamps`` are milliseconds since the epoch.
    """

    topic: str
    partition: int
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    timestamps: list[int]
    headers: list[Headers] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def next_offset(self) -> int:
        """The offset to commit once this whole batch is processed."""
        return self.offsets[-1] + 1


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What ``describe_topic`` tells: partitions with their first and next offsets."""

    name: str
    partitions: int
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """A consumer group's position on one partition."""

    tp: TopicPartition
    committed: int | None
    end_offset: int

    @property
    def lag(self) -> int:
        return self.end_offset - (self.committed or 0)


RebalanceCallback = Callable[[list[TopicPartition]], None]


class Producer(Protocol):
    """Writes records to topics. ``produce*`` may buffer; ``flush`` makes them durable."""

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
        """Queue one record; the partition comes from murmur2(key) like Kafka's, or round robin."""
        ...

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
        """Queue many records at once (the fast path)."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued record is stored; raise BrokerError if any was not."""
        ...

    def close(self) -> None: ...


class Consumer(Protocol):
    """Reads records in batches; a member of a group when built with a ``group_id``."""

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Join the group on these topics; partitions are shared among the group's members."""
        ...

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read these partitions, outside any group balancing."""
        ...

    def assignment(self) -> list[TopicPartition]: ...

    def poll_batch(self, max_records: int = 10_000, timeout: float = 1.0) -> list[RecordBatch]:
        """Up to ``max_records`` records, waiting at most ``timeout`` s for the first."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next offsets to read (synchronously)."""
        ...

    def committed(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` on (an assigned partition)."""
        ...

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record ``poll_batch`` returns for ``tp``."""
        ...

    def close(self) -> None:
        """Leave the group (its partitions go to other members at once)."""
        ...


class Broker(Protocol):
    """A place with topics: the embedded log or a Kafka cluster."""

    def producer(self, **config: object) -> Producer: ...

    def consumer(
        self, group_id: str | None = None, *, auto_offset_reset: str = "earliest", **config: object
    ) -> Consumer: ...

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        exist_ok: bool = False,
    ) -> None: ...

    def list_topics(self) -> list[str]: ...

    def describe_topic(self, name: str) -> TopicInfo: ...

    def delete_topic(self, name: str) -> None: ...

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...

    def group_lag(self, group_id: str, topics: Sequence[str] | None = None) -> list[PartitionLag]: ...

    def close(self) -> None: ...
