"""Producers on confluent-kafka: the port's columnar ``produce_batch``, and transactions."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _Producer
from confluent_kafka import TopicPartition as _TP

from headwater.errors import UserError
from headwater.stream._common import check_columns
from headwater.stream.broker import BrokerError, Headers, TopicPartition
from headwater.stream.kafka._config import LOGGER, log_kafka_error
from headwater.stream.kafka._errors import (
    KafkaTransactionError,
    connection_hint,
    describe,
    kafka_error_of,
    translate,
)

if TYPE_CHECKING:
    from headwater.stream.kafka._consumer import KafkaConsumer

# Records handed to librdkafka's native batch call at once: big enough to amortise the
# call, small enough that the dicts it needs stay cheap to build.
_CHUNK = 10_000
# Blocking librdkafka calls are cut into slices so Python signal handlers (SIGTERM,
# Ctrl-C) run between them.
_SLICE = 0.2


class KafkaProducer:
    """A :class:`~headwater.stream.broker.Producer` writing to Kafka through librdkafka.

    Records are queued in librdkafka and sent in the background; :meth:`flush` waits for
    them and raises :class:`BrokerError` naming each topic/partition whose records failed,
    with librdkafka's reason. Not thread-safe: one producer per thread.
    """

    def __init__(self, config: Mapping[str, object], bootstrap: str) -> None:
        self._bootstrap = bootstrap
        conf: dict[str, Any] = dict(config)
        self._user_on_delivery: Callable[[Any, Any], None] | None = conf.pop("on_delivery", None)
        self._user_error_cb: Callable[[Any], None] | None = conf.pop("error_cb", None)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        conf.setdefault("logger", LOGGER)
        # Room left in librdkafka's queue decides how big a native batch call may be.
        self._queue_limit = int(str(conf.get("queue.buffering.max.messages", 100_000)))
        try:
            self._p = _Producer(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(
                f"invalid Kafka producer settings: {exc}",
                hint="setting names and values are librdkafka's (CONFIGURATION.md of librdkafka)",
            ) from exc
        self._failures: dict[tuple[str, int], list[Any]] = {}  # (topic, partition) -> [count, KafkaError]
        self._fatal: KafkaError | None = None
        self._closed = False

    # -- callbacks (run inside poll/flush) -------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            where = (msg.topic(), msg.partition())
            entry = self._failures.get(where)
            if entry is None:
                self._failures[where] = [1, err]
            else:
                entry[0] += 1
        if self._user_on_delivery is not None:
            self._user_on_delivery(err, msg)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        if self._user_error_cb is not None:
            self._user_error_cb(err)
        else:
            log_kafka_error(err)

    # -- producing -------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers = (),
    ) -> None:
        """Queue one record; librdkafka picks the partition by murmur2(key) unless given."""
        self._check_usable()
        self._produce_one(
            topic,
            value,
            key,
            -1 if partition is None else partition,
            timestamp_ms or 0,
            list(headers) if headers else None,
        )

    def produce_batch(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None = None,
        *,
        partitions: Sequence[int] | None = None,
        timestamps: Sequence[int] | None = None,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        """Queue many records, in order; per-partition order is kept.

        Without timestamps or headers the records go through librdkafka's native batch
        call (about 3x fewer Python cycles per record than a loop of ``produce``).
        """
        self._check_usable()
        n = len(values)
        check_columns(n, keys=keys, partitions=partitions, timestamps=timestamps, headers=headers)
        if timestamps is None and (headers is None or not any(headers)):
            if partitions is None:
                for start in range(0, n, _CHUNK):
                    stop = min(n, start + _CHUNK)
                    self._queue_native(topic, -1, _messages(values[start:stop], keys, start, stop))
            else:
                # confluent-kafka's batch call ignores a per-record partition (2.16), so
                # one call per partition, each in the batch's order.
                for p, idx in _by_partition(partitions).items():
                    for start in range(0, len(idx), _CHUNK):
                        part = idx[start : start + _CHUNK]
                        vs = [values[i] for i in part]
                        ks = None if keys is None else [keys[i] for i in part]
                        self._queue_native(topic, p, _messages(vs, ks, 0, len(part)))
        else:
            for i in range(n):
                h = headers[i] if headers is not None else None
                self._produce_one(
                    topic,
                    values[i],
                    keys[i] if keys is not None else None,
                    partitions[i] if partitions is not None else -1,
                    timestamps[i] if timestamps is not None else 0,
                    list(h) if h else None,
                )
        self._p.poll(0)

    def _queue_native(self, topic: str, partition: int, messages: list[dict[str, Any]]) -> None:
        """Hand ``messages`` to librdkafka in order, waiting for queue room as needed.

        librdkafka's batch call may refuse some records when its queue is full while
        accepting later ones (the queue drains concurrently), which would reorder them;
        so a call only ever gets as many records as the queue has room for.
        """
        pending = messages
        while pending:
            room = self._queue_limit - len(self._p)
            if room <= 0:
                self._p.poll(0.01)
                continue
            part, pending = pending[:room], pending[room:]
            try:
                queued = self._p.produce_batch(topic, part, partition=partition)
            except KafkaException as exc:
                raise translate(exc, f"produce to topic {topic!r}", self._bootstrap) from exc
            if queued == len(part):
                continue
            refused = [m for m in part if "_error" in m]
            for m in refused:
                err = m.pop("_error")
                if err.code() == KafkaError._UNKNOWN_PARTITION:
                    raise _unknown_partition(topic, partition)
                if err.code() != KafkaError._QUEUE_FULL:
                    raise BrokerError(
                        f"librdkafka refused a record for topic {topic!r}: {describe(err, Exception())}",
                        hint="check the record's size against message.max.bytes and the topic name",
                    )
            # Queue full despite the room check (byte limit): retry those first, in order.
            pending = refused + pending
            self._p.poll(0.01)

    def _produce_one(
        self, topic: str, value: bytes | None, key: bytes | None, partition: int, ts: int, headers: Any
    ) -> None:
        while True:
            try:
                self._p.produce(topic, value, key, partition=partition, timestamp=ts, headers=headers)
                return
            except BufferError:
                # librdkafka's queue is full: serve delivery reports while it drains.
                self._p.poll(0.01)
            except KafkaException as exc:
                err = kafka_error_of(exc)
                if err is not None and err.code() == KafkaError._UNKNOWN_PARTITION:
                    raise _unknown_partition(topic, partition) from exc
                raise translate(exc, f"produce to topic {topic!r}", self._bootstrap) from exc

    # -- delivery --------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is acknowledged; raise BrokerError if any failed."""
        if self._closed:
            raise BrokerError("the Kafka producer is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = _SLICE if deadline is None else max(0.0, min(_SLICE, deadline - time.monotonic()))
            remaining = self._p.flush(step)
            if remaining == 0:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._raise_failures()
                raise BrokerError(
                    f"{remaining} records were still unacknowledged by Kafka at {self._bootstrap} after {timeout} s",
                    hint="flush again to keep waiting; " + connection_hint(self._bootstrap),
                )
        self._raise_failures()

    def _raise_failures(self) -> None:
        if self._fatal is not None:
            raise BrokerError(
                f"the Kafka producer hit a fatal error: {describe(self._fatal, Exception())}",
                hint="close this producer and create a new one; records not flushed must be produced again",
            )
        if not self._failures:
            return
        failures, self._failures = self._failures, {}
        total = sum(count for count, _ in failures.values())
        parts = "; ".join(
            f"{topic}[{partition}]: {count} x {describe(err, Exception())}"
            for (topic, partition), (count, err) in sorted(failures.items())
        )
        raise BrokerError(
            f"{total} records were not delivered to Kafka at {self._bootstrap}: {parts}",
            hint="a partition number past the topic's partitions, a missing topic or an unreachable "
            "broker are the usual causes; produce the records again once fixed",
        )

    def _check_usable(self) -> None:
        if self._closed:
            raise BrokerError("the Kafka producer is closed")
        if self._fatal is not None:
            self._raise_failures()

    def close(self) -> None:
        """Flush (raising if records failed), then release librdkafka's resources."""
        if self._closed:
            return
        try:
            self.flush(timeout=30.0)
        finally:
            self._closed = True
            self._release()

    def _release(self) -> None:
        """Drop what is left (not waited for forever) and free librdkafka's handle now.

        Closing the handle closes its connections at once rather than whenever the
        garbage collector breaks the handle <-> callback cycle.
        """
        self._p.purge()
        self._p.flush(0)
        self._p.close()

    @property
    def queued(self) -> int:
        """Records queued in librdkafka and not yet acknowledged by the broker."""
        return 0 if self._closed else len(self._p)


class KafkaTransactionalProducer(KafkaProducer):
    """A producer whose records become visible atomically, with the consumer's offsets.

    The exactly-once loop of a stream app: ``begin()``, produce the outputs of a batch,
    ``send_offsets_to_transaction(offsets, consumer)``, ``commit()``; on
    :class:`KafkaTransactionError` with ``abortable`` set, ``abort()`` and process the
    batch again from the committed offsets. ``transactional.id`` must stay stable across
    restarts of the same app instance, so a restarted instance fences the old one.
    """

    def __init__(self, config: Mapping[str, object], bootstrap: str, *, timeout: float) -> None:
        super().__init__(config, bootstrap)
        self._timeout = timeout
        self._txn(self._p.init_transactions, "initialise transactions")

    def _txn(self, call: Callable[..., Any], action: str, *args: Any) -> None:
        if self._closed:
            raise BrokerError("the Kafka producer is closed")
        try:
            call(*args, self._timeout)
        except KafkaException as exc:
            err = kafka_error_of(exc)
            abortable = bool(err is not None and err.txn_requires_abort())
            fatal = bool(err is not None and err.fatal())
            if fatal:
                hint = "close this producer and create a new one (another instance may use this transactional.id)"
            elif abortable:
                hint = "call abort() and process the batch again from the committed offsets"
            else:
                hint = connection_hint(self._bootstrap)
            raise KafkaTransactionError(
                f"could not {action} on Kafka at {self._bootstrap}: {describe(err, exc)}",
                hint=hint,
                abortable=abortable,
                retriable=bool(err is not None and err.retriable()),
                fatal=fatal,
            ) from exc

    def begin(self) -> None:
        """Start a transaction; every record produced until commit/abort belongs to it."""
        if self._closed:
            raise BrokerError("the Kafka producer is closed")
        try:
            self._p.begin_transaction()
        except KafkaException as exc:
            raise translate(exc, "begin a transaction", self._bootstrap) from exc

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, int], consumer: KafkaConsumer
    ) -> None:
        """Commit ``consumer``'s group ``offsets`` (next offsets to read) with this transaction."""
        positions = [_TP(tp.topic, tp.partition, int(offset)) for tp, offset in offsets.items()]
        metadata = consumer.group_metadata()
        self._txn(
            lambda timeout: self._p.send_offsets_to_transaction(positions, metadata, timeout),
            f"send offsets {_fmt(offsets)} to the transaction",
        )

    def commit(self) -> None:
        """Flush and commit the transaction: its records and offsets become visible at once."""
        self._txn(self._p.commit_transaction, "commit the transaction")
        # Delivery reports of a committed transaction carry nothing the commit did not.
        self._failures.clear()

    def abort(self) -> None:
        """Drop the transaction's records and offsets."""
        self._txn(self._p.abort_transaction, "abort the transaction")
        self._failures.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Records of an open transaction are dropped; librdkafka aborts it on close.
        self._release()


def _messages(
    values: Sequence[bytes | None], keys: Sequence[bytes | None] | None, start: int, stop: int
) -> list[dict[str, Any]]:
    """Records as the dicts librdkafka's batch call takes (``values`` is already sliced)."""
    if keys is None:
        return [{"value": v} for v in values]
    return [{"value": v, "key": k} for v, k in zip(values, keys[start:stop], strict=True)]


def _by_partition(partitions: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, p in enumerate(partitions):
        bucket = out.get(p)
        if bucket is None:
            out[p] = [i]
        else:
            bucket.append(i)
    return out


def _unknown_partition(topic: str, partition: int) -> UserError:
    return UserError(
        f"partition {partition} of topic {topic!r} does not exist",
        hint="describe the topic to see its partitions, or leave the partition out to choose by key",
    )


def _fmt(offsets: Mapping[TopicPartition, int]) -> str:
    return ", ".join(f"{tp}={offset}" for tp, offset in sorted(offsets.items())) or "(none)"


__all__ = ["KafkaProducer", "KafkaTransactionalProducer"]
