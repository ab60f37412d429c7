"""Client settings: headwater's defaults for librdkafka, and how user settings are merged over them.

Precedence, lowest first: :data:`PRODUCER_DEFAULTS` / :data:`CONSUMER_DEFAULTS`, the broker's
``config`` (shared by every client), its ``producer_config`` / ``consumer_config``, then the
keyword overrides of one ``producer()`` / ``consumer()`` call. A value of ``None`` removes a
key, so librdkafka's own default applies (``producer(**{"compression.type": None})``).
Keys are librdkafka's (``"linger.ms"``, ``"security.protocol"``, ``"sasl.username"`` ...)
and pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from headwater.errors import UserError

LOGGER = logging.getLogger("headwater.stream.kafka")

#: Producer settings chosen for throughput at a small latency cost (figures in the package docstring).
PRODUCER_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "client.id": "headwater",
        # Wait up to 5 ms to fill a batch (librdkafka's default too, pinned here); batches
        # up to 1 MiB, the largest a Kafka broker takes by default.
        "linger.ms": 5,
        "batch.num.messages": 100_000,
        "batch.size": 1_048_576,
        # lz4: cheap to compress, fewer bytes on real networks (no clear effect on loopback).
        "compression.type": "lz4",
        # No duplicates or reordering from internal retries (halves the produce rate on
        # Tansu; cheap on Kafka brokers).
        "enable.idempotence": True,
        # The Java client's rule (murmur2 of the key), which our embedded log and
        # headwater.stream.partitioner follow too. librdkafka's default is CRC32.
        "partitioner": "murmur2_random",
        # Only failures need a delivery report: no Python callback per delivered record.
        "delivery.report.only.error": True,
    }
)

#: Consumer settings chosen for throughput, short group joins and low latency.
CONSUMER_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "client.id": "headwater",
        # At-least-once: the app commits explicit offsets after its outputs are flushed.
        "enable.auto.commit": False,
        # Kafka's minimum. Tansu holds every JoinGroup for session.timeout.ms / 2, so
        # librdkafka's 45 s default makes each join or rebalance wait ~23 s there.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        # Incremental rebalances: a member keeps the partitions it still owns (and their
        # positions) while others join or leave, as in the embedded log; sticky
        # assignments also keep per-partition state where it is. Costs one more join
        # round per rebalance than eager range assignment.
        "partition.assignment.strategy": "cooperative-sticky",
        # Larger prefetch and fetches: about 4x the records/s of librdkafka's defaults.
        "queued.min.messages": 500_000,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        # Tansu answers an idle fetch on a timer: 500 ms (the default) costs ~200 ms of
        # latency per record there; at 50 ms a record arrives in ~1-2 ms.
        "fetch.wait.max.ms": 50,
    }
)


def merge_config(*layers: Mapping[str, object] | None) -> dict[str, object]:
    """Merge settings layers, later ones winning; a ``None`` value removes the key."""
    out: dict[str, object] = {}
    for layer in layers:
        if not layer:
            continue
        for key, value in layer.items():
            if not isinstance(key, str):
                raise UserError(f"Kafka setting names are strings like 'linger.ms', got {key!r}")
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
    return out


def log_kafka_error(err: object) -> None:
    """librdkafka's ``error_cb`` for non-fatal client errors (it retries them itself)."""
    LOGGER.warning("Kafka client error: %s", err)
