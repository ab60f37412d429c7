"""Rules every broker shares: topic names, partition choice for a batch, group assignment.

Kept apart from the backends so the memory fake and the embedded log behave alike.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from headwater.errors import UserError
from headwater.stream.broker import TopicPartition
from headwater.stream.partitioner import murmur2_many, partition_for

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

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
    """Picks partitions for records like a Kafka producer: murmur2 of the key, or round robin.

    Batches (:meth:`split`, :meth:`assign`) hash all their keys at once with numpy; single
    records (:meth:`partition`) use the scalar murmur2, which costs a few microseconds per
    key, with a bounded dict of key -> hash since stream keys repeat (a house id, a user id).
    Keyless records of one batch are spread in contiguous runs over the partitions (Kafka's
    sticky partitioner sends a whole batch to one partition; runs keep a big batch from
    landing on a single consumer).
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
        import numpy as np

        parts = self.assign(keys, partitions)
        # A stable sort by partition gives each partition's record indexes in batch order.
        order = np.argsort(parts, kind="stable")
        counts = np.bincount(parts, minlength=partitions).tolist()
        out: dict[int, Sequence[int]] = {}
        start = 0
        for p, count in enumerate(counts):
            if count:
                out[p] = order[start:start + count].tolist()
                start += count
        return out

    def assign(self, keys: Sequence[bytes | None], partitions: int) -> NDArray[np.int64]:
        """The partition of each record (murmur2 of its key, round robin if keyless), as numpy.

        Keys are hashed together by :func:`murmur2_many` (numpy). Measured on 10,000 keys
        (2026-11-22, one core): 0.06 us a key for 1-6 byte ids and 0.11 for 36-byte UUIDs
        against 1.1 and 4.9 us for the scalar hash; a whole :meth:`split` 0.17 / 0.14 us a
        key against 1.4 / 4.4 before (0.2 / 0.14 when every key was in the old cache), so
        the batch path needs no cache (and ids that never repeat missed it anyway).
        """
        import numpy as np

        n = len(keys)
        try:
            # len(None) raises TypeError: a batch with keyless records takes the path below.
            hashes = murmur2_many(keys)  # type: ignore[arg-type]
        except TypeError:
            keyless = [i for i, k in enumerate(keys) if k is None]
            keyed = [i for i, k in enumerate(keys) if k is not None]
            parts = np.empty(n, dtype=np.int64)
            parts[keyed] = (murmur2_many([k for k in keys if k is not None]) & 0x7FFFFFFF) % partitions
            parts[keyless] = (self._next + 1 + np.arange(len(keyless))) % partitions
            self._next += len(keyless)
            return parts
        return ((hashes & 0x7FFFFFFF) % partitions).astype(np.int64)


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
