"""Topic and group administration through confluent-kafka's AdminClient.

End offsets are measured with a fetch, not only asked with ListOffsets: Tansu answers
ListOffsets(latest) with the first offset of the partition's last record *batch* + 1
(a partition holding one batch of 10 records reports 1), while a fetch response carries
the right high watermark on every broker. A throwaway consumer starts at the reported end
and reads to the partition's end (at most one batch on Tansu; nothing on Kafka): about
30 ms for a few partitions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import TopicPartition as _TP
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
)

from headwater.stream._common import validate_partitions, validate_topic_name
from headwater.stream.broker import (
    BrokerError,
    PartitionLag,
    TopicExistsError,
    TopicInfo,
    TopicNotFoundError,
    TopicPartition,
)
from headwater.stream.kafka._config import LOGGER, log_kafka_error, merge_config
from headwater.stream.kafka._errors import kafka_error_of, translate

T = TypeVar("T")

_RETENTION_KEYS = frozenset({"retention.ms", "retention.bytes"})

# Settings of the end-offset probe consumer, over the user's shared settings.
_PROBE_CONFIG: Mapping[str, object] = {
    "enable.auto.commit": False,
    "enable.partition.eof": True,
    # The high watermark, as kafka-consumer-groups reports it, not the last stable offset.
    "isolation.level": "read_uncommitted",
    "fetch.wait.max.ms": 10,
}


class KafkaAdmin:
    """Admin calls for :class:`~headwater.stream.kafka.KafkaBroker`; thread-safe."""

    def __init__(self, bootstrap: str, config: Mapping[str, object], timeout: float) -> None:
        self._bootstrap = bootstrap
        self._config = dict(config)
        self._timeout = timeout
        conf: dict[str, Any] = dict(config)
        conf.setdefault("error_cb", log_kafka_error)
        conf.setdefault("logger", LOGGER)  # forwarded by poll(), called after each request
        try:
            self._client = AdminClient(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(f"invalid Kafka admin settings: {exc}", hint="setting names are librdkafka's") from exc

    # -- helpers ---------------------------------------------------------------------

    def _result(self, future: Future[T], action: str, *, topic: str | None = None) -> T:
        try:
            return future.result(timeout=self._timeout + 5)
        except (KafkaException, TimeoutError) as exc:
            raise translate(exc, action, self._bootstrap, topic=topic) from exc
        finally:
            self._client.poll(0)  # serve queued log lines and errors

    def _metadata(self) -> Any:
        # Never ask for one topic by name: brokers that auto-create topics (Tansu, and
        # Kafka by default) would create it.
        try:
            return self._client.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise translate(exc, "list topics", self._bootstrap) from exc
        finally:
            self._client.poll(0)

    def _partition_count(self, name: str, metadata: Any = None) -> int:
        md = metadata if metadata is not None else self._metadata()
        topic = md.topics.get(name)
        if topic is None or (topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            known = sorted(t for t in md.topics if not t.startswith("__"))
            raise TopicNotFoundError(
                f"topic {name!r} does not exist on Kafka at {self._bootstrap}",
                hint=f"create it first; known topics: {known}",
            )
        return len(topic.partitions)

    # -- topics ----------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int,
        *,
        retention_ms: int | None,
        retention_bytes: int | None,
        exist_ok: bool,
    ) -> None:
        validate_topic_name(name)
        validate_partitions(partitions)
        config = {}
        if retention_ms is not None:
            config["retention.ms"] = str(int(retention_ms))
        if retention_bytes is not None:
            config["retention.bytes"] = str(int(retention_bytes))
        futures = self._client.create_topics(
            [NewTopic(name, num_partitions=partitions, config=config)], request_timeout=self._timeout
        )
        try:
            self._result(futures[name], f"create topic {name!r}", topic=name)
        except TopicExistsError:
            if not exist_ok:
                raise

    def list_topics(self) -> list[str]:
        """Topic names, without Kafka's internal ones (``__consumer_offsets`` ...)."""
        return sorted(t for t in self._metadata().topics if not t.startswith("__"))

    def describe_topic(self, name: str) -> TopicInfo:
        validate_topic_name(name)
        count = self._partition_count(name)
        tps = [TopicPartition(name, p) for p in range(count)]
        starts = self._list_offsets(tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        ends = self.end_offsets(tps)
        return TopicInfo(
            name,
            count,
            {tp.partition: starts[tp] for tp in tps},
            {tp.partition: ends[tp] for tp in tps},
            self._topic_config(name),
        )

    def _list_offsets(self, tps: Sequence[TopicPartition], spec: Any) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        futures = self._client.list_offsets(
            {_TP(tp.topic, tp.partition): spec for tp in tps}, request_timeout=self._timeout
        )
        out = {}
        for ctp, future in futures.items():
            tp = TopicPartition(ctp.topic, ctp.partition)
            out[tp] = int(self._result(future, f"read offsets of {tp}", topic=tp.topic).offset)
        return out

    def _topic_config(self, name: str) -> dict[str, str]:
        """Settings set on the topic itself, and its retention whatever its source.

        Tansu reports a topic's own settings with the DEFAULT_CONFIG source, so retention
        (the settings the port knows) is kept from any source.
        """
        futures = self._client.describe_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, name)], request_timeout=self._timeout
        )
        try:
            entries = next(iter(futures.values())).result(timeout=self._timeout + 5)
        except (KafkaException, TimeoutError) as exc:
            LOGGER.warning("could not read the settings of topic %r: %s", name, exc)
            return {}
        return {
            key: str(entry.value)
            for key, entry in entries.items()
            if entry.value is not None
            and (entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value or key in _RETENTION_KEYS)
        }

    def delete_topic(self, name: str) -> None:
        validate_topic_name(name)
        futures = self._client.delete_topics([name], operation_timeout=self._timeout, request_timeout=self._timeout)
        self._result(futures[name], f"delete topic {name!r}", topic=name)

    # -- offsets ---------------------------------------------------------------------

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset the next record of each partition will get, measured by a fetch."""
        tps = list(dict.fromkeys(partitions))
        if not tps:
            return {}
        metadata = self._metadata()
        for topic in {tp.topic for tp in tps}:
            count = self._partition_count(topic, metadata)
            for tp in tps:
                if tp.topic == topic and not 0 <= tp.partition < count:
                    raise TopicNotFoundError(
                        f"{tp} does not exist: topic {topic!r} has {count} partitions on Kafka at {self._bootstrap}"
                    )
        return self._fetch_ends(tps)

    def _fetch_ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        reported = self._list_offsets(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        # An empty partition reports 0 everywhere; the others are read from there to the end.
        ends = {tp: 0 for tp, offset in reported.items() if offset <= 0}
        todo = [tp for tp in tps if tp not in ends]
        if not todo:
            return {tp: ends[tp] for tp in tps}
        # A fresh consumer each time, closed at once: a client that keeps a topic in its
        # metadata cache after the topic is deleted crashes (librdkafka 2.16 segfaults on
        # Tansu's metadata answer for a deleted topic).
        probe = self._probe_consumer()
        seen: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + self._timeout
        try:
            probe.assign([_TP(tp.topic, tp.partition, reported[tp]) for tp in todo])
            while len(ends) < len(tps) and time.monotonic() < deadline:
                messages: list[Any] = probe.consume(10_000, 0.01)
                for m in messages:
                    tp = TopicPartition(m.topic(), m.partition())
                    err = m.error()
                    if err is None:
                        seen[tp] = max(seen.get(tp, 0), m.offset() + 1)
                    elif err.code() == KafkaError._PARTITION_EOF:
                        ends[tp] = max(m.offset(), seen.get(tp, 0))
                    elif err.fatal():
                        raise BrokerError(f"reading end offsets from Kafka at {self._bootstrap} failed: {err.str()}")
        finally:
            probe.close()
        for tp in todo:
            if tp not in ends:
                # The fetch did not finish in time: keep what ListOffsets said.
                LOGGER.warning("end offset of %s not measured within %s s; using ListOffsets", tp, self._timeout)
                ends[tp] = max(reported[tp], seen.get(tp, 0))
        return {tp: ends[tp] for tp in tps}

    def _probe_consumer(self) -> _Consumer:
        conf: dict[str, Any] = merge_config(
            self._config, _PROBE_CONFIG, {"group.id": f"headwater-probe-{uuid.uuid4().hex}"}
        )
        conf.setdefault("error_cb", log_kafka_error)
        conf.setdefault("logger", LOGGER)
        return _Consumer(conf)

    def group_lag(self, group_id: str, topics: Sequence[str] | None) -> list[PartitionLag]:
        """Committed offset and end offset per partition of the group's topics (or of ``topics``)."""
        request = [ConsumerGroupTopicPartitions(group_id)]
        futures = self._client.list_consumer_group_offsets(request, request_timeout=self._timeout)
        try:
            result = next(iter(futures.values())).result(timeout=self._timeout + 5)
            listed = result.topic_partitions or []
        except KafkaException as exc:
            err = kafka_error_of(exc)
            if err is None or err.code() != KafkaError.GROUP_ID_NOT_FOUND:
                raise translate(exc, f"read offsets of group {group_id!r}", self._bootstrap) from exc
            listed = []
        except TimeoutError as exc:
            raise translate(exc, f"read offsets of group {group_id!r}", self._bootstrap) from exc
        committed = {TopicPartition(p.topic, p.partition): int(p.offset) for p in listed if p.offset >= 0}
        names = list(topics) if topics is not None else sorted({tp.topic for tp in committed})
        if not names:
            return []
        metadata = self._metadata()
        tps = [TopicPartition(name, p) for name in names for p in range(self._partition_count(name, metadata))]
        ends = self.end_offsets(tps)
        return [PartitionLag(tp, committed.get(tp), ends[tp]) for tp in tps]

    def close(self) -> None:
        """Nothing is held open between calls but the admin client, freed with this object."""
