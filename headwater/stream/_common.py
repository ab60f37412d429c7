"""Rules every broker shares: topic names, partition choice for a batch, group assignment.

Kept apart from the backends so the memory fake and the embedded log behave alike.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

from headwater.errors import UserError
from headwater.stream.broker import TopicPartition
from headwater.stream.partitioner import partition_for

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
OFFSET_RESETS = ("earliest", "latest")


def validate_topic_name(name: str) -> str:
    """Return ``name`` if Kafka would accept it as a topic name, else raise UserError."""
    if not isinstance(name, str) or not _TOPIC_NAME.match(name) or name in (".", ".."):
        raise UserError(
            f"invalid topic name {name!r}",
            hint="use 1 to 249 characters among letters, digits, '.', '_' and '-' (not '.' or '..')",
        )
    return name


def validate_partitions(partitions: int) -> int:
    if not isinstance(partitions, int) or partitions < 1:
        raise UserError(f"a topic needs at least one partition, got {partitions!r}")
    return partitions


def validate_offset_reset(value: str) -> str:
    if value not in OFFSET_RESETS:
        raise UserError(f"auto_offset_reset must be 'earliest' or 'latest', got {value!r}")
    return value


def check_columns(n: int, **columns: Sequence[object] | None) -> None:
    """Raise UserError unless every given column of a batch is as long as its values."""
    for name, column in columns.items():
        if column is not None and len(column) != n:
            raise UserError(f"produce_batch got {n} values but {len(column)} {name}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class KeyPartitioner:
    """Picks partitions for records like a Kafka producer, with a cache of murmur2 results.

    murmur2 in pure Python costs a few microseconds per key; stream keys repeat (a house id,
    a user id), so a bounded dict of key -> hash makes keyed batches nearly as cheap as
    keyless ones. Keyless records of one batch are spread in contiguous runs over the
    partitions (Kafka's sticky partitioner sends a whole batch to one partition; runs keep
    a big batch from landing on a single consumer).
    """

    _CACHE_LIMIT = 100_000

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}
        self._next = 0

    def partition(self, key: bytes | None, partitions: int) -> int:
        if key is None:
            self._next += 1
            return self._next % partitions
        h = self._hashes.get(key)
        if h is None:
            h = self._remember(key)
        return h % partitions

    def _remember(self, key: bytes) -> int:
        if len(self._hashes) >= self._CACHE_LIMIT:
            self._hashes.clear()
        # partition_for(key, 2**31) is the positive murmur2 hash; "% n" then gives partition_for(key, n).
        h = self._hashes[key] = partition_for(key, 0x80000000)
        return h

    def split(
        self, n_records: int, keys: Sequence[bytes | None] | None, partitions: int
    ) -> dict[int, Sequence[int]]:
        """Record indexes per partition (ranges for keyless batches, lists otherwise)."""
        if partitions == 1:
            return {0: range(n_records)}
        if keys is None or all(k is None for k in keys):
            # Contiguous runs: fast to slice, and order within the batch is kept per partition.
            self._next += 1
            run = max(1, -(-n_records // partitions))
            return {
                (self._next + i) % partitions: range(start, min(start + run, n_records))
                for i, start in enumerate(range(0, n_records, run))
            }
        hashes = self._hashes
        out: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            if key is None:
                self._next += 1
                p = self._next % partitions
            else:
                h = hashes.get(key)
                if h is None:
                    h = self._remember(key)
                p = h % partitions
            bucket = out.get(p)
            if bucket is None:
                out[p] = [i]
            else:
                bucket.append(i)
        return dict(out)


def range_assign(
    subscriptions: Mapping[str, Sequence[str]], partition_counts: Mapping[str, int]
) -> dict[str, list[TopicPartition]]:
    """Kafka's range assignor: per topic, its members (sorted) get contiguous partition ranges.

    ``subscriptions`` maps member id -> topics; topics missing from ``partition_counts``
    (not created yet) are skipped. Deterministic, so every member computes the same answer.
    """
    out: dict[str, list[TopicPartition]] = {member: [] for member in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    for topic in topics:
        n = partition_counts.get(topic)
        if not n:
            continue
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        per, extra = divmod(n, len(members))
        start = 0
        for i, member in enumerate(members):
            count = per + (1 if i < extra else 0)
            out[member].extend(TopicPartition(topic, p) for p in range(start, start + count))
            start += count
    return out
