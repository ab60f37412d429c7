"""Test a stream app in a few lines: inputs in, outputs and dead letters out, all in memory.

::

    from headwater.stream.testing import run_app

    def test_prices_are_doubled():
        app = StreamApp("doubler")
        app.stream("houses").map(lambda h: {**h, "price": h["price"] * 2}).to("doubled")
        result = run_app(app, inputs={"houses": [{"price": 1}, {"price": 2}, b"not json"]})
        assert result.values("doubled") == [{"price": 2}, {"price": 4}]
        assert result.dead_letters[0].step == "decode:houses"

:func:`run_app` creates the topics on a :class:`~headwater.stream.memory.MemoryBroker`
(or the one given), produces the inputs (values that are not bytes are encoded with the
source's serde, so malformed bytes can be fed as they are), runs the app until every input
is read, and returns what it wrote, decoded with each sink's serde.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from headwater.stream.app import StreamApp
from headwater.stream.broker import Broker, Headers, TopicPartition
from headwater.stream.dlq import DeadLetterRecord
from headwater.stream.dsl import SinkNode, SourceNode
from headwater.stream.memory import MemoryBroker
from headwater.stream.serde import Json, Serde


@dataclass(frozen=True)
class TestRecord:
    """An input record with its metadata; plain values are shorthand for ``TestRecord(value)``."""

    __test__ = False  # not a pytest test class

    value: Any
    key: bytes | str | None = None
    headers: Headers = ()
    timestamp: int | None = None
    partition: int | None = None


@dataclass(frozen=True)
class OutputRecord:
    """A record the app wrote: ``value`` decoded with the sink's serde, ``raw`` as stored."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: Any
    raw: bytes | None
    timestamp: int
    headers: Headers


@dataclass
class AppResult:
    """What one :func:`run_app` produced, per topic in (partition, offset) order."""

    outputs: dict[str, list[OutputRecord]]
    dead_letters: list[DeadLetterRecord]
    metrics: dict[str, Any]
    broker: Broker = field(repr=False)

    def values(self, topic: str) -> list[Any]:
        return [r.value for r in self.outputs.get(topic, [])]

    def keys(self, topic: str) -> list[bytes | None]:
        return [r.key for r in self.outputs.get(topic, [])]


def run_app(
    app: StreamApp,
    inputs: Mapping[str, Iterable[Any]] | None = None,
    *,
    partitions: int | Mapping[str, int] = 1,
    broker: Broker | None = None,
    max_batch_records: int | None = None,
) -> AppResult:
    """Produce ``inputs`` (topic -> values or :class:`TestRecord`), run ``app`` until idle, read its outputs.

    ``partitions`` is the partition count of the topics this call creates (one number for
    all, or per topic). Topics that already exist on ``broker`` are used as they are, so a
    second call on the same broker continues from the group's committed offsets.
    """
    broker = broker if broker is not None else MemoryBroker()
    inputs = dict(inputs or {})
    sinks = {node.topic: node for node in reversed(app.topology.nodes) if isinstance(node, SinkNode)}
    sources = {node.topic: node for node in reversed(app.topology.nodes) if isinstance(node, SourceNode)}
    for topic in {*inputs, *sources, *sinks}:
        count = partitions if isinstance(partitions, int) else partitions.get(topic, 1)
        broker.create_topic(topic, count, exist_ok=True)
    producer = broker.producer()
    for topic, records in inputs.items():
        serde = sources[topic].value if topic in sources else Json()
        for record in records:
            _produce(producer, topic, record if isinstance(record, TestRecord) else TestRecord(record), serde)
    producer.flush()
    producer.close()

    saved = app.max_batch_records
    if max_batch_records is not None:
        app.max_batch_records = max_batch_records
    try:
        app.run(broker, stop_when_idle=True, handle_signals=False)
    finally:
        app.max_batch_records = saved

    outputs = {topic: _read(broker, topic, sinks[topic].value) for topic in sorted(sinks)}
    dead = [
        DeadLetterRecord.parse(r.key, r.raw, r.headers, r.timestamp)
        for r in _read(broker, app.dlq_topic, None)
    ]
    return AppResult(outputs, dead, app.metrics.snapshot(), broker)


def _produce(producer: Any, topic: str, record: TestRecord, serde: Serde) -> None:
    value = record.value
    if value is not None and not isinstance(value, bytes):
        value = serde.encode(value)
    key = record.key.encode() if isinstance(record.key, str) else record.key
    producer.produce(
        topic, value, key, partition=record.partition, timestamp_ms=record.timestamp, headers=tuple(record.headers)
    )


def _read(broker: Broker, topic: str, serde: Serde | None) -> list[OutputRecord]:
    """Every record of ``topic``, by partition then offset (a groupless consumer; nothing committed)."""
    if topic not in broker.list_topics():
        return []
    info = broker.describe_topic(topic)
    tps = [TopicPartition(topic, p) for p in range(info.partitions)]
    ends = broker.end_offsets(tps)
    consumer = broker.consumer(None)
    consumer.assign(tps)
    found: dict[int, list[OutputRecord]] = {p: [] for p in range(info.partitions)}
    try:
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll_batch(max_records=100_000, timeout=1.0):
                headers = batch.headers or [()] * len(batch)
                for i, offset in enumerate(batch.offsets):
                    raw = batch.values[i]
                    found[batch.partition].append(
                        OutputRecord(topic, batch.partition, offset, batch.keys[i], _decode(serde, raw), raw,
                                     batch.timestamps[i], headers[i])
                    )
    finally:
        consumer.close()
    return [r for p in sorted(found) for r in found[p]]


def _decode(serde: Serde | None, raw: bytes | None) -> Any:
    if serde is None:
        return raw
    try:
        return serde.decode(raw)
    except Exception:
        return raw  # shown as stored: the test sees what was written
