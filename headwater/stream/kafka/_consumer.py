"""A consumer on confluent-kafka: columnar batches per partition, explicit commits, rebalance callbacks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_STORED, KafkaError, KafkaException
from confluent_kafka import Consumer as _Consumer
from confluent_kafka import TopicPartition as _TP

from headwater.errors import UserError
from headwater.stream._common import validate_topic_name
from headwater.stream.broker import BrokerError, RebalanceCallback, RecordBatch, TopicPartition
from headwater.stream.kafka._config import LOGGER, log_kafka_error
from headwater.stream.kafka._errors import UNKNOWN_TOPIC_CODES, KafkaCommitError, describe, translate

EndOffsets = Callable[[Sequence[TopicPartition]], dict[TopicPartition, int]]

_SLICE = 0.2  # longest blocking call, so signal handlers run between slices


class KafkaConsumer:
    """A :class:`~headwater.stream.broker.Consumer` reading Kafka through librdkafka.

    ``poll_batch`` returns one :class:`RecordBatch` per partition, waiting at most
    ``timeout`` for the first record and then taking whatever else is already fetched.
    Nothing is committed implicitly. Not thread-safe: one consumer per thread.
    """

    def __init__(
        self,
        config: Mapping[str, object],
        bootstrap: str,
        *,
        group_id: str | None,
        auto_offset_reset: str,
        end_offsets: EndOffsets,
        timeout: float,
    ) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._reset = auto_offset_reset
        self._end_offsets = end_offsets
        self._timeout = timeout
        conf: dict[str, Any] = dict(config)
        self._user_error_cb: Callable[[Any], None] | None = conf.pop("error_cb", None)
        conf["error_cb"] = self._on_error
        conf.setdefault("logger", LOGGER)
        try:
            self._c = _Consumer(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(
                f"invalid Kafka consumer settings: {exc}",
                hint="setting names and values are librdkafka's (CONFIGURATION.md of librdkafka)",
            ) from exc
        strategy = str(conf.get("partition.assignment.strategy", ""))
        self._cooperative = "cooperative" in strategy
        self._subscribed = False
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._seeked: dict[TopicPartition, int] = {}  # positions set by seek, until a record is read
        self._fatal: KafkaError | None = None
        self._warned_topics: set[str] = set()
        self._closed = False

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        if self._user_error_cb is not None:
            self._user_error_cb(err)
        else:
            log_kafka_error(err)

    # -- membership ------------------------------------------------------------------

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Join the group on ``topics``; the join itself happens inside the next ``poll_batch``."""
        self._require_group("subscribe")
        names = [validate_topic_name(t) for t in topics]
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._subscribed = True
        try:
            self._c.subscribe(names, on_assign=self._assigned, on_revoke=self._revoked)
        except KafkaException as exc:
            raise translate(exc, f"subscribe to {names}", self._bootstrap) from exc

    def _assigned(self, consumer: Any, partitions: list[_TP]) -> None:
        """librdkafka's assign callback: take the partitions (the added ones, when cooperative), then tell the app."""
        if self._reset == "latest":
            self._start_at_true_end(partitions)
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        if self._on_assign is not None and partitions:
            self._on_assign([TopicPartition(p.topic, p.partition) for p in partitions])

    def _revoked(self, consumer: Any, partitions: list[_TP]) -> None:
        """librdkafka's revoke (and lost) callback: the app flushes and commits first."""
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        for tp in tps:
            self._seeked.pop(tp, None)
        if self._on_revoke is not None and tps:
            self._on_revoke(tps)
        # confluent-kafka (incrementally) unassigns them after this callback returns.

    def _start_at_true_end(self, partitions: list[_TP]) -> None:
        """For ``latest``: start partitions without a committed offset at their real end.

        librdkafka resolves ``latest`` with ListOffsets, which Tansu answers with the last
        record *batch's* first offset + 1, so the consumer would re-read part of that batch;
        the end offset measured by a fetch is right on every broker.
        """
        missing = [p for p in partitions if p.offset < 0]
        if not missing:
            return
        if self._group_id is not None:
            committed = self._c.committed([_TP(p.topic, p.partition) for p in missing], timeout=self._timeout)
            known = {(c.topic, c.partition) for c in committed if c.offset >= 0}
            missing = [p for p in missing if (p.topic, p.partition) not in known]
        if missing:
            ends = self._end_offsets([TopicPartition(p.topic, p.partition) for p in missing])
            for p in missing:
                tp = TopicPartition(p.topic, p.partition)
                p.offset = self._seeked[tp] = ends[tp]

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read these partitions from the committed offsets (or ``auto_offset_reset``), no group balancing."""
        self._check_open()
        parts = [_TP(tp.topic, tp.partition) for tp in partitions]
        self._seeked.clear()
        if self._reset == "latest":
            self._start_at_true_end(parts)
        try:
            self._c.assign(parts)
        except KafkaException as exc:
            raise translate(exc, f"assign {list(partitions)}", self._bootstrap) from exc

    def assignment(self) -> list[TopicPartition]:
        self._check_open()
        return sorted(TopicPartition(p.topic, p.partition) for p in self._c.assignment())

    # -- reading ---------------------------------------------------------------------

    def poll_batch(self, max_records: int = 10_000, timeout: float = 1.0) -> list[RecordBatch]:
        """Up to ``max_records`` records as one batch per partition; waits at most ``timeout`` s for the first.

        Rebalance callbacks run inside this call (and their exceptions come out of it).
        """
        self._check_open()
        if max_records <= 0:
            return []
        batches: dict[tuple[str, int], tuple[RecordBatch, list[Any]]] = {}
        count = self._take(self._consume(max_records, 0), batches)
        deadline = time.monotonic() + max(0.0, timeout)
        while count == 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # poll() returns as soon as one record is there (consume() would wait for all).
            first = self._poll(min(remaining, _SLICE))
            if first is None:
                continue
            count = self._take([first], batches)
            if count and max_records > count:
                count += self._take(self._consume(max_records - count, 0), batches)
        out = []
        for batch, headers in batches.values():
            if any(h is not None for h in headers):
                batch.headers = [
                    tuple((k, b"" if v is None else bytes(v)) for k, v in h) if h else () for h in headers
                ]
            self._seeked.pop(batch.tp, None)
            out.append(batch)
        return out

    def _consume(self, n: int, timeout: float) -> list[Any]:
        try:
            return self._c.consume(n, timeout)
        except KafkaException as exc:
            raise translate(exc, "read records", self._bootstrap) from exc

    def _poll(self, timeout: float) -> Any:
        try:
            return self._c.poll(timeout)
        except KafkaException as exc:
            raise translate(exc, "read records", self._bootstrap) from exc

    def _take(self, messages: list[Any], batches: dict[tuple[str, int], tuple[RecordBatch, list[Any]]]) -> int:
        """Append records to their partition's batch (columns); return how many were records."""
        count = 0
        for m in messages:
            err = m.error()
            if err is not None:
                self._message_error(err, m)
                continue
            topic, partition = m.topic(), m.partition()
            entry = batches.get((topic, partition))
            if entry is None:
                entry = batches[(topic, partition)] = (RecordBatch(topic, partition, [], [], [], [], []), [])
            batch, headers = entry
            batch.offsets.append(m.offset())
            batch.keys.append(m.key())
            batch.values.append(m.value())
            batch.timestamps.append(m.timestamp()[1])
            headers.append(m.headers())
            count += 1
        if self._fatal is not None:
            self._raise_fatal()
        return count

    def _message_error(self, err: KafkaError, message: Any) -> None:
        """Errors that come as messages: end of partition, missing topics, and fatal ones."""
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            self._fatal = err
            self._raise_fatal()
        topic = message.topic()
        if code in UNKNOWN_TOPIC_CODES:
            # Like the other brokers: a missing topic is read once it exists (librdkafka
            # checks again every topic.metadata.refresh.interval.ms).
            if topic not in self._warned_topics:
                self._warned_topics.add(topic)
                LOGGER.warning("topic %r does not exist yet on Kafka at %s: %s", topic, self._bootstrap, err.str())
            return
        LOGGER.warning("Kafka consumer error (librdkafka retries it): %s", err)

    def _raise_fatal(self) -> None:
        raise BrokerError(
            f"the Kafka consumer hit a fatal error: {describe(self._fatal, Exception())}",
            hint="close this consumer and create a new one; uncommitted records will be read again",
        )

    # -- offsets ---------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next offsets to read, synchronously."""
        group = self._require_group("commit")
        if not offsets:
            return
        parts = [_TP(tp.topic, tp.partition, int(offset)) for tp, offset in offsets.items()]
        try:
            result = self._c.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            raise self._commit_error(group, offsets, describe(exc.args[0] if exc.args else None, exc)) from exc
        failed = [p for p in result or () if p.error is not None]
        if failed:
            reasons = "; ".join(f"{p.topic}[{p.partition}]: {describe(p.error, Exception())}" for p in failed)
            raise self._commit_error(group, offsets, reasons)

    def _commit_error(self, group: str, offsets: Mapping[TopicPartition, int], reason: str) -> KafkaCommitError:
        listed = ", ".join(f"{tp}={o}" for tp, o in sorted(offsets.items()))
        return KafkaCommitError(
            f"group {group!r} could not commit {listed} on Kafka at {self._bootstrap}: {reason}",
            hint="if the group rebalanced, the partitions' new owner reads those records again (at-least-once); "
            "otherwise check the broker",
        )

    def committed(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._require_group("committed")
        try:
            result = self._c.committed([_TP(tp.topic, tp.partition) for tp in partitions], timeout=self._timeout)
        except KafkaException as exc:
            raise translate(exc, "read committed offsets", self._bootstrap) from exc
        got = {TopicPartition(p.topic, p.partition): (p.offset if p.offset >= 0 else None) for p in result}
        return {tp: got.get(tp) for tp in partitions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` on; works right after assignment too."""
        self._require_assigned(tp, "seek")
        target = _TP(tp.topic, tp.partition, int(offset))
        try:
            self._c.seek(target)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError._STATE):
                raise translate(exc, f"seek {tp} to {offset}", self._bootstrap) from exc
            # The partition is assigned but not fetching yet (just assigned): assign again
            # with explicit offsets, keeping the other partitions where they are.
            self._reassign(tp, int(offset))
        self._seeked[tp] = int(offset)

    def _reassign(self, tp: TopicPartition, offset: int) -> None:
        target = _TP(tp.topic, tp.partition, offset)
        if self._cooperative or not self._subscribed:
            # Only this partition changes; the others keep their fetch positions.
            self._c.incremental_unassign([_TP(tp.topic, tp.partition)])
            self._c.incremental_assign([target])
            return
        # An eager group member can only set its whole assignment: keep the others' positions.
        current = self._c.assignment()
        positions = {(p.topic, p.partition): p.offset for p in self._c.position(current)}
        parts = []
        for p in current:
            other = TopicPartition(p.topic, p.partition)
            if other == tp:
                parts.append(target)
                continue
            pos = self._seeked.get(other, positions.get((p.topic, p.partition), -1))
            if pos >= 0:
                # librdkafka forgets positions on assign; position() must not.
                self._seeked[other] = pos
            parts.append(_TP(p.topic, p.partition, pos if pos >= 0 else OFFSET_STORED))
        self._c.assign(parts)

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record ``poll_batch`` returns for ``tp``."""
        self._require_assigned(tp, "position")
        pos = self._c.position([_TP(tp.topic, tp.partition)])[0].offset
        if pos >= 0:
            return int(pos)
        if tp in self._seeked:
            return self._seeked[tp]
        if self._group_id is not None:
            committed = self.committed([tp])[tp]
            if committed is not None:
                return committed
        if self._reset == "latest":
            return self._end_offsets([tp])[tp]
        low, _ = self._c.get_watermark_offsets(_TP(tp.topic, tp.partition), timeout=self._timeout)
        return int(low)

    def group_metadata(self) -> Any:
        """librdkafka's group metadata, for ``send_offsets_to_transaction``."""
        self._require_group("send offsets to a transaction")
        return self._c.consumer_group_metadata()

    def close(self) -> None:
        """Leave the group at once (partitions move to the other members) and release resources."""
        if self._closed:
            return
        self._closed = True
        try:
            self._c.close()
        except KafkaException as exc:
            LOGGER.warning("closing the Kafka consumer: %s", exc)

    # -- checks ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError("the Kafka consumer is closed")

    def _require_group(self, action: str) -> str:
        self._check_open()
        if self._group_id is None:
            raise UserError(f"{action} needs a consumer group", hint="create the consumer with group_id=...")
        return self._group_id

    def _require_assigned(self, tp: TopicPartition, action: str) -> None:
        assigned = self.assignment()
        if tp not in assigned:
            raise UserError(f"cannot {action} {tp}: it is not assigned to this consumer", hint=f"assigned: {assigned}")
