"""LogConsumer: reads partitions of the embedded log, alone or as a member of a group.

``poll_batch`` drives the group (see groups.py): at most every ``rebalance_check``
seconds it looks at the group's generation and, when the members, the topics' partition
counts or its own pending claims changed, revokes and claims partitions. A daemon thread
heartbeats (and evicts dead members) every ``heartbeat_interval`` seconds, so a long batch
in the app does not get its consumer evicted; it stops heartbeating when ``poll_batch``
has not been called for ``max_poll_interval`` seconds (a stuck app), as Kafka does.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from headwater.errors import UserError
from headwater.stream._common import range_assign, validate_topic_name
from headwater.stream.broker import (
    BrokerError,
    RebalanceCallback,
    RecordBatch,
    TopicNotFoundError,
    TopicPartition,
)
from headwater.stream.log.groups import GroupStore
from headwater.stream.log.partition import PartitionReader
from headwater.stream.log.segment import CorruptBatchError

if TYPE_CHECKING:
    from headwater.stream.log.broker import EmbeddedBroker

log = logging.getLogger(__name__)

CONSUMER_SETTINGS = ("session_timeout", "heartbeat_interval", "max_poll_interval", "rebalance_check")
_COUNTS_REFRESH = 1.0
_MAX_IDLE_SLEEP = 0.02


class _Heartbeat(threading.Thread):
    """Keeps a member alive while its process lives and polls; evicts dead members."""

    def __init__(self, consumer: LogConsumer, group: str, member: str) -> None:
        super().__init__(name=f"headwater-heartbeat-{group}", daemon=True)
        self._consumer = consumer
        self._group = group
        self._member = member
        self.stopped = threading.Event()

    def run(self) -> None:
        c = self._consumer
        store: GroupStore | None = None
        try:
            store = GroupStore(c._broker.groups_path)
            while not self.stopped.wait(c.heartbeat_interval):
                if time.monotonic() - c._last_poll > c.max_poll_interval:
                    continue  # the app is stuck: let the group evict us
                try:
                    store.heartbeat(self._group, self._member, c.session_timeout)
                except BrokerError as exc:  # a busy file: try again next interval
                    log.warning("heartbeat of group %s failed: %s", self._group, exc)
        except Exception:
            log.exception("the heartbeat thread of group %s stopped", self._group)
        finally:
            if store is not None:
                store.close()


class LogConsumer:
    """Reads an :class:`EmbeddedBroker`; not thread-safe (one per thread)."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        group_id: str | None,
        auto_offset_reset: str,
        *,
        session_timeout: float,
        heartbeat_interval: float | None = None,
        max_poll_interval: float = 300.0,
        rebalance_check: float | None = None,
    ) -> None:
        self._broker = broker
        self._group = group_id
        self._reset = auto_offset_reset
        self.session_timeout = float(session_timeout)
        self.heartbeat_interval = float(heartbeat_interval or self.session_timeout / 3)
        self.max_poll_interval = float(max_poll_interval)
        self._rebalance_check = float(rebalance_check or min(0.1, self.session_timeout / 10))
        self._member = f"{uuid.uuid4().hex[:12]}"
        self._store: GroupStore | None = None
        self._readers: dict[TopicPartition, PartitionReader] = {}
        self._topics: tuple[str, ...] = ()
        self._subscribed = False
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._heartbeat: _Heartbeat | None = None
        self._seen: tuple[int, dict[str, int]] | None = None
        self._pending_claims = False
        self._next_check = 0.0
        self._counts: dict[str, int] = {}
        self._counts_at = -_COUNTS_REFRESH
        self._last_poll = time.monotonic()
        self._rotation = 0
        self._closed = False

    # -- group plumbing --------------------------------------------------------------

    def _groups(self, action: str) -> tuple[GroupStore, str]:
        if self._closed:
            raise BrokerError("the consumer is closed")
        if self._group is None:
            raise UserError(f"{action} needs a consumer group", hint="create the consumer with group_id=...")
        if self._store is None:
            self._store = GroupStore(self._broker.groups_path)
        return self._store, self._group

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Join the group on ``topics`` (missing topics are picked up when created)."""
        store, group = self._groups("subscribe")
        if self._readers and not self._subscribed:
            raise UserError("this consumer has partitions from assign(); use another consumer to subscribe")
        names = tuple(validate_topic_name(t) for t in topics)
        self._topics = names
        self._on_assign, self._on_revoke = on_assign, on_revoke
        store.join(group, self._member, names)
        self._subscribed = True
        self._next_check = 0.0
        if self._heartbeat is None:
            self._heartbeat = _Heartbeat(self, group, self._member)
            self._heartbeat.start()

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read these partitions, from the group's committed offsets if any, outside any balancing."""
        if self._subscribed:
            raise UserError("this consumer is subscribed to a group; assign() is for consumers outside one")
        for tp in partitions:
            self._broker._check_partition(tp)
        for reader in self._readers.values():
            reader.close()
        self._readers = {}
        starts = self._start_offsets(list(partitions))
        self._readers = {tp: self._reader(tp, starts[tp]) for tp in partitions}

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._readers)

    def _reader(self, tp: TopicPartition, offset: int) -> PartitionReader:
        return PartitionReader(self._broker.partition_dir(tp.topic, tp.partition), offset)

    def _start_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        committed: dict[TopicPartition, int | None] = dict.fromkeys(tps)
        if self._group is not None and tps:
            committed = self._groups("read offsets")[0].committed(self._group, tps)
        out = {}
        for tp in tps:
            start, end = self._broker._bounds(tp)
            c = committed[tp]
            if c is not None:
                out[tp] = max(start, min(c, end))
            else:
                out[tp] = start if self._reset == "earliest" else end
        return out

    def _partition_counts(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._counts_at >= _COUNTS_REFRESH:
            counts = {}
            for name in self._topics:
                try:
                    counts[name] = self._broker.topic_meta(name).partitions
                except TopicNotFoundError:
                    continue
            self._counts, self._counts_at = counts, now
        return self._counts

    def _rebalance(self) -> None:
        """Revoke what is no longer ours, then claim what is ours and free (groups.py)."""
        now = time.monotonic()
        if not self._subscribed or now < self._next_check:
            return
        self._next_check = now + self._rebalance_check
        store, group = self._groups("poll")
        counts = self._partition_counts()
        if not self._pending_claims and self._seen == (store.generation(group), counts):
            return
        generation, members, _owners = store.view(group)
        if self._member not in members:
            # Evicted (no heartbeat for a session): everything we read is someone else's now.
            log.warning("consumer %s was evicted from group %s; rejoining", self._member, group)
            self._revoke(sorted(self._readers), release=False)
            store.join(group, self._member, self._topics)
            self._next_check = 0.0
            return
        target = set(range_assign(members, counts).get(self._member, []))
        lost = sorted(tp for tp in self._readers if tp not in target)
        if lost:
            self._revoke(lost, release=True)
        wanted = sorted(target - set(self._readers))
        gained = store.claim(group, self._member, wanted) if wanted else []
        starts = self._start_offsets(gained)
        for tp in gained:
            self._readers[tp] = self._reader(tp, starts[tp])
        self._pending_claims = len(gained) < len(wanted)
        self._seen = (generation, dict(counts))
        if gained and self._on_assign is not None:
            self._on_assign(gained)

    def _revoke(self, tps: list[TopicPartition], *, release: bool) -> None:
        if not tps:
            return
        if self._on_revoke is not None:
            self._on_revoke(tps)  # the app commits here, while it still owns them
        for tp in tps:
            reader = self._readers.pop(tp, None)
            if reader is not None:
                reader.close()
        if release:
            store, group = self._groups("revoke")
            store.release(group, self._member, tps)

    # -- reading ---------------------------------------------------------------------

    def poll_batch(self, max_records: int = 10_000, timeout: float = 1.0) -> list[RecordBatch]:
        """Up to ``max_records`` records over the assigned partitions (rotating which goes first)."""
        if self._closed:
            raise BrokerError("the consumer is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        idle = 0.001
        while True:
            self._last_poll = time.monotonic()
            self._rebalance()
            batches = self._read(max_records)
            remaining = deadline - time.monotonic()
            if batches or remaining <= 0:
                return batches
            # No change notification between processes: back off from 1 ms to 20 ms.
            time.sleep(min(idle, remaining))
            idle = min(idle * 2, _MAX_IDLE_SLEEP)

    def _read(self, max_records: int) -> list[RecordBatch]:
        tps = sorted(self._readers)
        if not tps:
            return []
        self._rotation = (self._rotation + 1) % len(tps)
        out = []
        budget = max_records
        for tp in tps[self._rotation :] + tps[: self._rotation]:
            if budget <= 0:
                break
            try:
                d = self._readers[tp].read(budget)
            except CorruptBatchError as exc:
                raise BrokerError(f"{tp} is corrupt: {exc}", hint="restore the folder or delete the topic") from exc
            except OSError as exc:
                raise BrokerError(f"reading {tp} failed: {exc}") from exc
            if d is None:
                continue
            n = len(d)
            out.append(
                RecordBatch(tp.topic, tp.partition, list(range(d.base, d.base + n)), d.keys, d.values,
                            d.timestamps, d.headers)
            )
            budget -= n
        return out

    # -- offsets ---------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next offsets; refused for partitions a subscribed member no longer owns."""
        store, group = self._groups("commit")
        store.commit(group, offsets, self._member if self._subscribed else None)

    def committed(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        store, group = self._groups("committed")
        return store.committed(group, partitions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` (kept within the partition's start and end)."""
        reader = self._readers.get(tp)
        if reader is None:
            raise UserError(
                f"cannot seek {tp}: it is not assigned to this consumer", hint=f"assigned: {self.assignment()}"
            )
        start, end = self._broker._bounds(tp)
        reader.seek(max(start, min(int(offset), end)))

    def position(self, tp: TopicPartition) -> int:
        reader = self._readers.get(tp)
        if reader is None:
            raise UserError(f"{tp} is not assigned to this consumer", hint=f"assigned: {self.assignment()}")
        return reader.next_offset

    def close(self) -> None:
        """Revoke (the app's last commit) and leave the group, so others take the partitions at once."""
        if self._closed:
            return
        try:
            if self._subscribed and self._group is not None:
                self._revoke(sorted(self._readers), release=False)
                if self._heartbeat is not None:
                    self._heartbeat.stopped.set()
                    self._heartbeat.join(timeout=5)
                self._groups("close")[0].leave(self._group, self._member)
        finally:
            self._closed = True
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
            if self._store is not None:
                self._store.close()
                self._store = None
