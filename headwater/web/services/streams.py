"""Streams: topics with their partitions and offsets, consumer groups with their lag, recent dead letters.

Reads the broker the settings name (the embedded log in ``$HEADWATER_HOME/topics``, or Kafka), as
the ``topics`` and ``groups`` commands do. Reading records never commits anything (no group).
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.errors import UserError
from headwater.web.services.masking import mask_mapping, mask_urls

if TYPE_CHECKING:
    from headwater.stream.broker import Broker, Consumer, RecordBatch, TopicPartition
    from headwater.web.services.context import WebContext

DLQ_SUFFIX = ".dlq"
MAX_RECORDS = 500


@dataclass
class PartitionInfo:
    """One partition: its first kept offset and its next (end) offset."""

    partition: int
    start_offset: int
    end_offset: int


@dataclass
class TopicSummary:
    """A topic: partitions, records kept, end offsets; ``dead_letters`` for an app's ``<app>.dlq`` topic."""

    name: str
    partitions: list[PartitionInfo]
    records: int
    end_offset_total: int
    is_dead_letter: bool


@dataclass
class GroupPartitionLag:
    """A consumer group's position on one partition."""

    topic: str
    partition: int
    committed: int | None
    end_offset: int
    lag: int


@dataclass
class GroupInfo:
    """A consumer group (a stream app's group is its name) and its lag per partition."""

    group: str
    total_lag: int
    partitions: list[GroupPartitionLag] = field(default_factory=list)


@dataclass
class AppInstance:
    """A stream-app instance, from the status file it writes every few seconds (``headwater stream run``).

    ``state`` is running, stopped (clean exit, or its heartbeat stopped: ``stale``) or failed;
    ``status`` is the whole snapshot (counters, rates, batch latency, partitions and lag, models,
    recent alerts and dead letters; format in :mod:`headwater.monitoring.status`), URLs masked.
    """

    app: str
    instance_id: str
    state: str
    stale: bool
    heartbeat: dt.datetime | None
    hostname: str | None
    pid: int | None
    records_in: int
    records_out: int
    dead_lettered: int
    lag: int | None
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamsOverview:
    """Where topics live, running apps, every topic, and the groups of the apps (those with a status
    file or a dead-letter topic)."""

    broker: str
    apps: list[AppInstance]
    topics: list[TopicSummary]
    groups: list[GroupInfo]


@dataclass
class DeadLetter:
    """A record an app could not process: where it came from, why, and its key and value (as text or
    base64 when binary)."""

    app: str
    dlq_partition: int
    dlq_offset: int
    timestamp: dt.datetime
    error_type: str
    error_message: str
    step: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: str | None
    value: str | None
    binary: bool


@contextmanager
def broker(ctx: WebContext) -> Iterator[Broker]:
    """The broker of the settings, closed after use."""
    from headwater.stream.connect import open_broker

    b = open_broker(ctx.settings)
    try:
        yield b
    finally:
        b.close()


def overview(ctx: WebContext) -> StreamsOverview:
    """Running apps, every topic with its offsets, and the lag of each app's group."""
    from headwater.stream.connect import broker_label

    instances = list_apps(ctx)
    with broker(ctx) as b:
        topics = [_topic(b, name) for name in sorted(b.list_topics())]
        names = {t.name[: -len(DLQ_SUFFIX)] for t in topics if t.is_dead_letter}
        names |= {str(i.status.get("group_id") or i.app) for i in instances}
        groups = [g for g in (_group(b, name, None) for name in sorted(names)) if g.partitions]
        return StreamsOverview(mask_urls(broker_label(b)), instances, topics, groups)


def list_apps(ctx: WebContext, app: str | None = None) -> list[AppInstance]:
    """The stream-app instances that wrote a status file (of ``app``, or all), by app and instance.

    Reading changes nothing: files of instances that are gone are left for the CLI to clean up.
    """
    from headwater.monitoring.status import read_app_statuses

    out = []
    for st in read_app_statuses(ctx.settings, app=app, now=ctx.clock.now(), remove_dead=False):
        counters = _dict(st.data.get("counters"))
        lag = _dict(st.data.get("lag"))
        out.append(AppInstance(
            app=st.app, instance_id=st.instance_id, state=st.state, stale=st.stale, heartbeat=st.heartbeat,
            hostname=st.hostname, pid=st.pid, records_in=_int(counters.get("records_in")),
            records_out=_int(counters.get("records_out")), dead_lettered=_int(counters.get("records_dead_lettered")),
            lag=lag.get("total") if isinstance(lag.get("total"), int) else None, status=mask_mapping(st.data),
        ))
    return out


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def get_topic(ctx: WebContext, name: str) -> TopicSummary:
    """One topic; TopicNotFoundError when there is none."""
    with broker(ctx) as b:
        return _topic(b, name)


def get_group(ctx: WebContext, group: str, topics: list[str] | None = None) -> GroupInfo:
    """A group's committed offsets and lag (on ``topics``, default: those it committed on)."""
    with broker(ctx) as b:
        info = _group(b, group, topics)
    if not info.partitions:
        raise UserError(f"group {group!r} has committed no offsets",
                        hint="a stream app's group is its name unless it sets group_id=; "
                             "?topic=T shows the lag a new group would have on T")
    return info


def dead_letters(ctx: WebContext, app: str, *, limit: int = 50) -> list[DeadLetter]:
    """The newest ``limit`` dead letters of ``app`` (newest first), with their reasons."""
    from headwater.stream.dlq import DeadLetterRecord, dlq_topic

    if not 1 <= limit <= MAX_RECORDS:
        raise UserError(f"limit {limit} is out of range", hint=f"ask for 1 to {MAX_RECORDS} dead letters")
    topic = dlq_topic(app)
    with broker(ctx) as b:
        if topic not in b.list_topics():
            raise UserError(f"app {app!r} has no dead-letter topic {topic!r}",
                            hint="an app writes dead letters once a record fails; GET /api/v1/streams lists topics")
        out = []
        for partition, offset, ts, key, value, headers in newest_records(b, topic, limit):
            dead = DeadLetterRecord.parse(key, value, headers, ts)
            key_text, key_bin = _text(key)
            value_text, value_bin = _text(value)
            out.append(DeadLetter(
                app=dead.app or app, dlq_partition=partition, dlq_offset=offset,
                timestamp=dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC), error_type=dead.error_type,
                error_message=mask_urls(dead.error_message), step=dead.step, source_topic=dead.topic,
                source_partition=dead.partition, source_offset=dead.offset, key=key_text, value=value_text,
                binary=key_bin or value_bin,
            ))
        return out


Row = tuple[int, int, int, "bytes | None", "bytes | None", "tuple[tuple[str, bytes], ...]"]


def newest_records(b: Broker, topic: str, count: int, *, idle: float = 2.0) -> list[Row]:
    """The newest ``count`` records of ``topic`` across partitions, newest first:
    ``(partition, offset, timestamp_ms, key, value, headers)``. Reads as no group."""
    from headwater.stream.broker import TopicPartition

    info = b.describe_topic(topic)
    tps = [TopicPartition(topic, p) for p in range(info.partitions)]
    ends = {tp: info.end_offsets.get(tp.partition, 0) for tp in tps}
    if count <= 0 or sum(ends.values()) == sum(info.start_offsets.values()):
        return []
    consumer = b.consumer(None)
    try:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(info.start_offsets.get(tp.partition, 0), ends[tp] - count))
        rows = _read_to(consumer, ends, idle=idle)
    finally:
        consumer.close()
    rows.sort(key=lambda r: (r[2], r[0], r[1]), reverse=True)
    return rows[:count]


def _read_to(consumer: Consumer, ends: dict[TopicPartition, int], *, idle: float) -> list[Row]:
    # Stop also after `idle` quiet seconds: Kafka's transaction markers take offsets never returned.
    rows: list[Row] = []
    quiet_since = time.monotonic()
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        batches: list[RecordBatch] = consumer.poll_batch(10_000, timeout=0.2)
        if batches:
            for bt in batches:
                headers = bt.headers or [()] * len(bt)
                rows.extend(zip([bt.partition] * len(bt), bt.offsets, bt.timestamps, bt.keys, bt.values, headers,
                                strict=True))
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > idle:
            break
    return rows


def _topic(b: Broker, name: str) -> TopicSummary:
    info = b.describe_topic(name)
    parts = [PartitionInfo(p, info.start_offsets.get(p, 0), info.end_offsets.get(p, 0))
             for p in range(info.partitions)]
    ends = sum(p.end_offset for p in parts)
    return TopicSummary(name, parts, ends - sum(p.start_offset for p in parts), ends, name.endswith(DLQ_SUFFIX))


def _group(b: Broker, group: str, topics: list[str] | None) -> GroupInfo:
    lags = sorted(b.group_lag(group, topics or None), key=lambda x: (x.tp.topic, x.tp.partition))
    parts = [GroupPartitionLag(x.tp.topic, x.tp.partition, x.committed, x.end_offset, x.lag) for x in lags]
    return GroupInfo(group, sum(p.lag for p in parts), parts)


def _text(data: bytes | None) -> tuple[str | None, bool]:
    if data is None:
        return None, False
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True
