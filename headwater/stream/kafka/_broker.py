"""KafkaBroker: the broker port on a Kafka cluster (or any Kafka-protocol broker)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from headwater.errors import UserError
from headwater.stream._common import validate_offset_reset
from headwater.stream.broker import PartitionLag, TopicInfo, TopicPartition
from headwater.stream.kafka._admin import KafkaAdmin
from headwater.stream.kafka._config import CONSUMER_DEFAULTS, PRODUCER_DEFAULTS, merge_config
from headwater.stream.kafka._consumer import KafkaConsumer
from headwater.stream.kafka._producer import KafkaProducer, KafkaTransactionalProducer


class KafkaBroker:
    """Topics on Kafka, through confluent-kafka (librdkafka).

    ``config`` holds librdkafka settings shared by every client this broker makes
    (``security.protocol``, ``sasl.*``, ``ssl.*`` ...); ``producer_config`` and
    ``consumer_config`` apply to one kind only. They override headwater's defaults
    (:data:`PRODUCER_DEFAULTS`, :data:`CONSUMER_DEFAULTS`) and are overridden by the keyword
    settings of each ``producer()`` / ``consumer()`` call; a ``None`` value removes a key.
    ``request_timeout`` (seconds) bounds admin calls and offset look-ups.

    Nothing connects until a client or an admin call needs to.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        config: Mapping[str, object] | None = None,
        producer_config: Mapping[str, object] | None = None,
        consumer_config: Mapping[str, object] | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            raise UserError(
                f"bootstrap_servers must name at least one broker, got {bootstrap_servers!r}",
                hint="give host:port pairs separated by commas, e.g. '127.0.0.1:9092'",
            )
        self.bootstrap_servers = bootstrap_servers.strip()
        self.config = merge_config(config)
        self.producer_config = merge_config(producer_config)
        self.consumer_config = merge_config(consumer_config)
        self.request_timeout = float(request_timeout)
        self._admin: KafkaAdmin | None = None

    def __repr__(self) -> str:
        return f"KafkaBroker({self.bootstrap_servers!r})"

    def _base(self) -> dict[str, object]:
        return {"bootstrap.servers": self.bootstrap_servers}

    # -- clients ---------------------------------------------------------------------

    def producer_settings(self, **config: object) -> dict[str, object]:
        """The librdkafka settings ``producer(**config)`` would use."""
        return merge_config(PRODUCER_DEFAULTS, self.config, self.producer_config, config, self._base())

    def consumer_settings(
        self, group_id: str | None = None, *, auto_offset_reset: str = "earliest", **config: object
    ) -> dict[str, object]:
        """The librdkafka settings ``consumer(group_id, ...)`` would use."""
        validate_offset_reset(auto_offset_reset)
        # librdkafka needs a group id even to read assigned partitions; an unused one
        # never talks to a group coordinator.
        group = group_id if group_id is not None else f"headwater-nogroup-{uuid.uuid4().hex}"
        fixed = {"group.id": group, "auto.offset.reset": auto_offset_reset}
        return merge_config(CONSUMER_DEFAULTS, self.config, self.consumer_config, config, fixed, self._base())

    def producer(self, **config: object) -> KafkaProducer:
        """A producer; keyword settings are librdkafka's: ``producer(**{"linger.ms": 0})``."""
        return KafkaProducer(self.producer_settings(**config), self.bootstrap_servers)

    def transactional_producer(self, transactional_id: str, **config: object) -> KafkaTransactionalProducer:
        """A producer for transactions (exactly-once); ``transactional_id`` is stable per app instance."""
        if not transactional_id:
            raise UserError("a transactional producer needs a non-empty transactional_id")
        settings = self.producer_settings(**config)
        settings["transactional.id"] = transactional_id
        return KafkaTransactionalProducer(settings, self.bootstrap_servers, timeout=self.request_timeout)

    def consumer(
        self, group_id: str | None = None, *, auto_offset_reset: str = "earliest", **config: object
    ) -> KafkaConsumer:
        """A consumer; in group ``group_id`` once it subscribes. Keyword settings are librdkafka's."""
        settings = self.consumer_settings(group_id, auto_offset_reset=auto_offset_reset, **config)
        return KafkaConsumer(
            settings,
            self.bootstrap_servers,
            group_id=group_id,
            auto_offset_reset=auto_offset_reset,
            end_offsets=self.end_offsets,
            timeout=self.request_timeout,
        )

    # -- admin -----------------------------------------------------------------------

    @property
    def admin(self) -> KafkaAdmin:
        if self._admin is None:
            settings = merge_config(self.config, self._base())
            self._admin = KafkaAdmin(self.bootstrap_servers, settings, self.request_timeout)
        return self._admin

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        retention_ms: int | None = None,
        retention_bytes: int | None = None,
        exist_ok: bool = False,
    ) -> None:
        self.admin.create_topic(
            name, partitions, retention_ms=retention_ms, retention_bytes=retention_bytes, exist_ok=exist_ok
        )

    def list_topics(self) -> list[str]:
        return self.admin.list_topics()

    def describe_topic(self, name: str) -> TopicInfo:
        return self.admin.describe_topic(name)

    def delete_topic(self, name: str) -> None:
        self.admin.delete_topic(name)

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self.admin.end_offsets(partitions)

    def group_lag(self, group_id: str, topics: Sequence[str] | None = None) -> list[PartitionLag]:
        return self.admin.group_lag(group_id, topics)

    def close(self) -> None:
        """Release the admin client; producers and consumers are closed by their owners."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
