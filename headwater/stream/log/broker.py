"""EmbeddedBroker: topics as folders of segment files, with admin, producers and consumers.

Layout of the log folder (``$HEADWATER_HOME/topics`` from the CLI)::

    @groups.sqlite             consumer groups (see groups.py); '@' cannot start a topic name
    <topic>/topic.json         partitions, retention, segment size
    <topic>/<partition>/...    see partition.py

A topic is created in a temporary folder and renamed into place, so other processes see
it whole or not at all; it is deleted by renaming it away first, for the same reason.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from headwater.errors import UserError
from headwater.stream._common import validate_offset_reset, validate_partitions, validate_topic_name
from headwater.stream.broker import (
    BrokerError,
    PartitionLag,
    TopicExistsError,
    TopicInfo,
    TopicNotFoundError,
    TopicPartition,
)
from headwater.stream.log.consumer import CONSUMER_SETTINGS, LogConsumer
from headwater.stream.log.groups import GroupStore
from headwater.stream.log.partition import (
    FSYNC_POLICIES,
    PartitionGoneError,
    PartitionWriter,
    Retention,
    fsync_dir,
    log_bounds,
    segment_name,
)
from headwater.stream.log.producer import PRODUCER_SETTINGS, LogProducer

GROUPS_FILE = "@groups.sqlite"
DEFAULT_SEGMENT_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class TopicMeta:
    """What topic.json holds."""

    name: str
    partitions: int
    retention: Retention


def _bad_config(kind: str, unknown: Iterable[str], known: Iterable[str]) -> UserError:
    return UserError(
        f"unknown {kind} setting(s) for the embedded log: {', '.join(sorted(unknown))}",
        hint=f"known settings: {', '.join(sorted(known))}",
    )


class EmbeddedBroker:
    """The default broker: a durable log in a local folder, shared by every process on the machine.

    ``auto_create_topics`` (default True, as Kafka's ``auto.create.topics.enable``): producing
    to a missing topic creates it with one partition. ``fsync``: ``"interval"`` (default),
    ``"always"`` or ``"never"``; see :mod:`headwater.stream.log`. ``session_timeout``: seconds
    without a heartbeat after which a group member is evicted (a dead process is evicted
    sooner). ``segment_bytes``: size at which a partition rolls to a new segment file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        auto_create_topics: bool = True,
        fsync: str = "interval",
        fsync_interval: float = 1.0,
        session_timeout: float = 6.0,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise UserError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        self.path = os.fspath(path)
        self.auto_create_topics = auto_create_topics
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.session_timeout = session_timeout
        self.segment_bytes = segment_bytes
        self._groups: GroupStore | None = None
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise BrokerError(f"cannot create the log folder {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self.path!r})"

    # -- paths and metadata ----------------------------------------------------------

    @property
    def groups_path(self) -> str:
        return os.path.join(self.path, GROUPS_FILE)

    def groups(self) -> GroupStore:
        """This broker's own connection to the groups file (admin calls)."""
        if self._groups is None:
            self._groups = GroupStore(self.groups_path)
        return self._groups

    def partition_dir(self, topic: str, partition: int) -> str:
        return os.path.join(self.path, topic, str(partition))

    def topic_meta(self, name: str) -> TopicMeta:
        validate_topic_name(name)
        try:
            with open(os.path.join(self.path, name, "topic.json"), "rb") as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise TopicNotFoundError(
                f"topic {name!r} does not exist in {self.path}",
                hint=f"create it (headwater topics create {name}); known topics: {self.list_topics()}",
            ) from None
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot read the metadata of topic {name!r}: {exc}") from exc
        retention = Retention(raw.get("retention_bytes"), raw.get("retention_ms"), raw["segment_bytes"])
        return TopicMeta(name, int(raw["partitions"]), retention)

    def _check_partition(self, tp: TopicPartition) -> TopicMeta:
        meta = self.topic_meta(tp.topic)
        if not 0 <= tp.partition < meta.partitions:
            raise UserError(f"{tp} does not exist: topic {tp.topic!r} has {meta.partitions} partition(s)")
        return meta

    # -- admin -----------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        exist_ok: bool = False,
        segment_bytes: int | None = None,
    ) -> None:
        """Create a topic; ``segment_bytes`` defaults to the broker's, capped at a quarter of
        ``retention_bytes`` so size retention has whole segments to delete."""
        validate_topic_name(name)
        validate_partitions(partitions)
        if segment_bytes is None:
            segment_bytes = self.segment_bytes
            if retention_bytes is not None:
                segment_bytes = max(4096, min(segment_bytes, retention_bytes // 4))
        final = os.path.join(self.path, name)
        if os.path.exists(os.path.join(final, "topic.json")):
            if exist_ok:
                return
            raise TopicExistsError(f"topic {name!r} already exists", hint="pick another name or delete it first")
        tmp = os.path.join(self.path, f"@tmp-{uuid.uuid4().hex}")
        try:
            os.mkdir(tmp)
            meta = {
                "partitions": partitions,
                "retention_ms": retention_ms,
                "retention_bytes": retention_bytes,
                "segment_bytes": segment_bytes,
            }
            with open(os.path.join(tmp, "topic.json"), "w") as f:
                json.dump(meta, f)
            for p in range(partitions):
                pdir = os.path.join(tmp, str(p))
                os.mkdir(pdir)
                for fname in ("lock", segment_name(0)):
                    with open(os.path.join(pdir, fname), "wb"):
                        pass
            try:
                # Atomic: readers see no topic or a whole one. Fails if the name is taken.
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
                if exist_ok:
                    return
                raise TopicExistsError(
                    f"topic {name!r} already exists", hint="pick another name or delete it first"
                ) from None
            if self.fsync != "never":
                fsync_dir(self.path)
        except OSError as exc:
            raise BrokerError(f"cannot create topic {name!r} in {self.path}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def list_topics(self) -> list[str]:
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise BrokerError(f"cannot list the log folder {self.path}: {exc}") from exc
        return sorted(
            n for n in names if not n.startswith("@") and os.path.exists(os.path.join(self.path, n, "topic.json"))
        )

    def describe_topic(self, name: str) -> TopicInfo:
        meta = self.topic_meta(name)
        starts, ends = {}, {}
        for p in range(meta.partitions):
            starts[p], ends[p] = self._bounds(TopicPartition(name, p))
        r = meta.retention
        config = {"segment.bytes": str(r.segment_bytes)}
        if r.max_ms is not None:
            config["retention.ms"] = str(r.max_ms)
        if r.max_bytes is not None:
            config["retention.bytes"] = str(r.max_bytes)
        return TopicInfo(name, meta.partitions, starts, ends, config)

    def delete_topic(self, name: str) -> None:
        self.topic_meta(name)
        gone = os.path.join(self.path, f"@deleted-{uuid.uuid4().hex}")
        try:
            os.rename(os.path.join(self.path, name), gone)
        except FileNotFoundError:
            raise TopicNotFoundError(f"topic {name!r} does not exist in {self.path}") from None
        except OSError as exc:
            raise BrokerError(f"cannot delete topic {name!r}: {exc}") from exc
        shutil.rmtree(gone, ignore_errors=True)
        self.groups().forget_topic(name)

    def _bounds(self, tp: TopicPartition) -> tuple[int, int]:
        try:
            return log_bounds(self.partition_dir(tp.topic, tp.partition))
        except PartitionGoneError:
            raise TopicNotFoundError(f"topic {tp.topic!r} was deleted") from None
        except OSError as exc:
            raise BrokerError(f"cannot read {tp} in {self.path}: {exc}") from exc

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        out = {}
        for tp in partitions:
            self._check_partition(tp)
            out[tp] = self._bounds(tp)[1]
        return out

    def start_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        out = {}
        for tp in partitions:
            self._check_partition(tp)
            out[tp] = self._bounds(tp)[0]
        return out

    def group_lag(self, group_id: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        store = self.groups()
        names = list(topics) if topics is not None else store.group_topics(group_id)
        out = []
        for name in names:
            meta = self.topic_meta(name)
            tps = [TopicPartition(name, p) for p in range(meta.partitions)]
            committed = store.committed(group_id, tps)
            for tp in tps:
                out.append(PartitionLag(tp, committed[tp], self._bounds(tp)[1]))
        return out

    def apply_retention(self, topics: Sequence[str] | None = None) -> dict[TopicPartition, list[int]]:
        """Delete segments past each topic's retention now; returns the deleted segments' bases.

        Producers also do this as they append; this is for topics nobody writes to any more.
        """
        out: dict[TopicPartition, list[int]] = {}
        for name in self.list_topics() if topics is None else topics:
            meta = self.topic_meta(name)
            for p in range(meta.partitions):
                try:
                    writer = PartitionWriter(self.partition_dir(name, p), meta.retention, fsync="never")
                except PartitionGoneError:
                    continue
                try:
                    deleted = writer.locked_retention()
                except PartitionGoneError:
                    deleted = []
                except OSError as exc:
                    raise BrokerError(f"retention of {name}[{p}] failed: {exc}") from exc
                finally:
                    writer.close()
                if deleted:
                    out[TopicPartition(name, p)] = deleted
        return out

    # -- clients ---------------------------------------------------------------------

    def producer(self, **config: object) -> LogProducer:
        """A producer; settings: ``fsync``, ``fsync_interval``, ``max_buffered_records``."""
        unknown = set(config) - set(PRODUCER_SETTINGS)
        if unknown:
            raise _bad_config("producer", unknown, PRODUCER_SETTINGS)
        settings: dict[str, Any] = {"fsync": self.fsync, "fsync_interval": self.fsync_interval, **config}
        if settings["fsync"] not in FSYNC_POLICIES:
            raise UserError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {settings['fsync']!r}")
        return LogProducer(self, **settings)

    def consumer(
        self, group_id: str | None = None, *, auto_offset_reset: str = "earliest", **config: object
    ) -> LogConsumer:
        """A consumer; settings: ``session_timeout``, ``heartbeat_interval``, ``max_poll_interval`` (s)."""
        validate_offset_reset(auto_offset_reset)
        unknown = set(config) - set(CONSUMER_SETTINGS)
        if unknown:
            raise _bad_config("consumer", unknown, CONSUMER_SETTINGS)
        if group_id is not None and (not isinstance(group_id, str) or not group_id):
            raise UserError(f"group_id must be a non-empty string, got {group_id!r}")
        settings: dict[str, Any] = {"session_timeout": self.session_timeout, **config}
        return LogConsumer(self, group_id, auto_offset_reset, **settings)

    def close(self) -> None:
        if self._groups is not None:
            self._groups.close()
            self._groups = None

