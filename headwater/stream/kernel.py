"""The stream kernel: poll -> apply -> flush -> commit, one micro-batch at a time.

It knows nothing of the DSL beyond :class:`~headwater.stream.dsl.Topology` (``run`` a
micro-batch, the topics it reads and writes) and nothing of the backend beyond the broker
port. A micro-batch is what the consumer gives in up to ``max_batch_records`` records or
``max_batch_latency`` seconds after the first of them, whichever comes first.

Delivery is at-least-once by default (see :meth:`StreamKernel.commit`): offsets move only
after the outputs and dead letters of their records are flushed, so a crash anywhere
means the records after the last commit are read and processed again. With
``processing_guarantee="exactly_once"`` the outputs and the offsets are committed in one
Kafka transaction instead.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from headwater.errors import UserError
from headwater.stream.broker import Broker, Consumer, Producer, RecordBatch, TopicNotFoundError, TopicPartition
from headwater.stream.chunk import Context, InputTable, Output
from headwater.stream.dlq import dead_letter_output
from headwater.stream.dsl import Topology
from headwater.stream.metrics import BatchMonitor, MetricsRecorder

log = logging.getLogger("headwater.stream")

GUARANTEES = ("at_least_once", "exactly_once")


@runtime_checkable
class TransactionalProducer(Producer, Protocol):
    """A producer whose records and consumer offsets commit together (``KafkaTransactionalProducer``).

    Brokers that support it have ``transactional_producer(transactional_id, **config)``.
    """

    def begin(self) -> None:
        """Start a transaction: what is produced until commit/abort belongs to it."""
        ...

    def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int], consumer: Any) -> None:
        """Add the group's next offsets to the open transaction (``consumer`` gives the group metadata)."""
        ...

    def commit(self) -> None:
        """Commit the transaction: its records and offsets become visible together."""
        ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class KernelConfig:
    """How one app instance consumes, batches and commits."""

    app: str
    group_id: str
    dlq_topic: str
    max_batch_records: int = 10_000
    max_batch_latency: float = 0.1
    processing_guarantee: str = "at_least_once"
    auto_offset_reset: str = "earliest"
    consumer_config: Mapping[str, Any] = field(default_factory=dict)
    producer_config: Mapping[str, Any] = field(default_factory=dict)
    # How long one poll waits for a first record: bounds how late a stop request is seen.
    poll_timeout: float = 0.2


class StreamKernel:
    """Runs a topology on a broker until stopped; see the module docstring."""

    def __init__(
        self,
        topology: Topology,
        broker: Broker,
        config: KernelConfig,
        metrics: MetricsRecorder,
        *,
        stopping: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        monitor: BatchMonitor | None = None,
    ) -> None:
        self.topology = topology
        self.broker = broker
        self.config = config
        self.metrics = metrics
        self.monitor = monitor
        self.stopping = stopping if stopping is not None else threading.Event()
        self._clock = clock
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._transactions: TransactionalProducer | None = None  # the producer, when exactly-once
        self._buffer: list[RecordBatch] = []
        self._pending: dict[TopicPartition, int] = {}
        self._in_transaction = False
        self._failed = False

    @property
    def exactly_once(self) -> bool:
        return self.config.processing_guarantee == "exactly_once"

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight, commit and return (safe from signal handlers)."""
        self.stopping.set()

    # -- the loop ------------------------------------------------------------------------

    def run(self, *, stop_when_idle: bool = False) -> None:
        """Process micro-batches until :meth:`stop` (or, with ``stop_when_idle``, until every
        assigned partition is read to its end, batches then not waiting for more records).
        Raises on broker failures and app bugs, after closing without committing the batch
        that failed."""
        self._open()
        monitor = self.monitor
        ok = False
        try:
            while not self.stopping.is_set():
                if stop_when_idle and self._caught_up():
                    break
                batches = self._collect(eager=stop_when_idle)
                if batches:
                    started = self._clock()
                    out, ctx = self._process(batches)
                    self.commit()
                    seconds = self._clock() - started
                    self.metrics.batch_done(
                        records_in=sum(len(b) for b in batches),
                        records_out=out,
                        dead_letters=len(ctx.dead),
                        seconds=seconds,
                    )
                    if monitor is not None:
                        monitor.batch_done(batches, out, ctx, seconds)
                    del ctx, batches  # free the batch's input table before the next poll, not after it
                if monitor is not None:
                    monitor.tick(self)  # also when idle: lag and heartbeats go on without records
            ok = True
        finally:
            self._close(ok)

    def _open(self) -> None:
        cfg = self.config
        topology = self.topology
        topology.prepare()
        known = set(self.broker.list_topics())
        missing = [t for t in (*topology.source_topics(), *topology.sink_topics()) if t not in known]
        if missing:
            raise TopicNotFoundError(
                f"stream app {cfg.app!r} needs topics that do not exist: {', '.join(missing)}",
                hint=f"create them first, e.g. `headwater topics create {missing[0]} --partitions N`",
            )
        self.broker.create_topic(cfg.dlq_topic, exist_ok=True)
        self._producer = self._make_producer()
        if isinstance(self._producer, TransactionalProducer) and self.exactly_once:
            self._transactions = self._producer
        self._consumer = self.broker.consumer(
            cfg.group_id, auto_offset_reset=cfg.auto_offset_reset, **dict(cfg.consumer_config)
        )
        self._consumer.subscribe(topology.source_topics(), on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("stream app %s started: group %s, reading %s", cfg.app, cfg.group_id, topology.source_topics())

    def _make_producer(self) -> Producer:
        cfg = self.config
        if not self.exactly_once:
            return self.broker.producer(**dict(cfg.producer_config))
        factory = getattr(self.broker, "transactional_producer", None)
        if factory is None:
            raise UserError(
                f"processing_guarantee='exactly_once' needs a broker with transactions; "
                f"{type(self.broker).__name__} has none",
                hint="use Kafka (KafkaBroker), or processing_guarantee='at_least_once'",
            )
        txn_id = str(cfg.producer_config.get("transactional.id") or f"{cfg.group_id}.{uuid.uuid4().hex[:12]}")
        config = {k: v for k, v in cfg.producer_config.items() if k != "transactional.id"}
        producer = factory(txn_id, **config)
        if not isinstance(producer, TransactionalProducer):
            raise UserError(
                f"{type(self.broker).__name__}.transactional_producer() gave a producer without transactions"
            )
        return producer

    def _collect(self, *, eager: bool = False) -> list[RecordBatch]:
        """Poll until ``max_batch_records`` are buffered or ``max_batch_latency`` has passed since the first.

        ``eager`` (catch-up runs) does not wait for more records once every partition is read to its end.
        """
        cfg = self.config
        consumer = self._consumer
        assert consumer is not None
        deadline: float | None = None
        while not self.stopping.is_set():
            count = sum(len(b) for b in self._buffer)
            if count >= cfg.max_batch_records:
                break
            if deadline is None:
                timeout = cfg.poll_timeout
            else:
                timeout = deadline - self._clock()
                if timeout <= 0:
                    break
            got = [b for b in consumer.poll_batch(max_records=cfg.max_batch_records - count, timeout=timeout) if len(b)]
            if got:
                self._buffer.extend(got)
                if deadline is None:
                    deadline = self._clock() + cfg.max_batch_latency
                if eager and self._caught_up():
                    break
            elif deadline is None:
                break  # nothing came: let run() look at stop requests and idleness
        batches, self._buffer = self._buffer, []
        return batches

    def _process(self, batches: list[RecordBatch]) -> tuple[dict[str, int], Context]:
        """Apply the topology to one micro-batch and produce its outputs and dead letters (not flushed)."""
        ctx = Context(InputTable.from_batches(batches))
        self.topology.run(ctx)
        producer = self._producer
        assert producer is not None
        if self._transactions is not None and not self._in_transaction:
            self._transactions.begin()
            self._in_transaction = True
        produced: dict[str, int] = {}
        for topic, out in ctx.outputs.items():
            if len(out):
                _produce(producer, topic, out)
                produced[topic] = len(out)
        if ctx.dead:
            _produce(producer, self.config.dlq_topic, dead_letter_output(ctx, self.config.app))
            log.warning(
                "stream app %s: %d record(s) dead-lettered to %s (first: step %s, %s)",
                self.config.app, len(ctx.dead), self.config.dlq_topic, ctx.dead[0].step, ctx.dead[0].error,
            )
        for batch in batches:
            tp = batch.tp
            self._pending[tp] = max(self._pending.get(tp, 0), batch.next_offset)
        return produced, ctx

    def commit(self) -> None:
        """Make the processed records' outputs durable, then move the group's offsets past them.

        The order of the steps is what makes delivery at-least-once: an offset is never
        committed before the outputs of its record are stored, so a crash between two
        steps means reprocessing (duplicates downstream), never loss.

        1. If no processed batch is waiting, return.
        2. Flush the producer: every output and dead letter of the processed batches is
           stored, or ``flush`` raises and nothing is committed (the app stops; a restart
           reads again from the last commit).
        3. Commit the input offsets: for each partition, the offset after the last
           processed record. With exactly-once: add these offsets to the open transaction
           (``send_offsets_to_transaction``) and commit the transaction, so outputs, dead
           letters and offsets become visible together.
        4. Forget the pending offsets and count the commit.
        """
        # Step 1.
        if not self._pending:
            return
        producer, consumer = self._producer, self._consumer
        assert producer is not None and consumer is not None
        # Step 2.
        producer.flush()
        # Step 3.
        offsets = dict(self._pending)
        if self._transactions is not None:
            self._transactions.send_offsets_to_transaction(offsets, consumer)
            self._transactions.commit()
            self._in_transaction = False
        else:
            consumer.commit(offsets)
        # Step 4.
        self._pending.clear()
        self.metrics.committed(partitions=len(offsets))

    # -- group membership and shutdown ------------------------------------------------------

    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        log.info("stream app %s: assigned %s", self.config.app, ", ".join(map(str, partitions)))

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Before partitions go to another member: commit what is processed, forget what is only polled."""
        if not self._failed:
            self.commit()
        gone = set(partitions)
        self._buffer = [b for b in self._buffer if b.tp not in gone]
        log.info("stream app %s: revoked %s", self.config.app, ", ".join(map(str, partitions)))

    def _caught_up(self) -> bool:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        if not assigned:
            return False
        ends = self.broker.end_offsets(assigned)
        return all(consumer.position(tp) >= ends[tp] for tp in assigned)

    def lag(self) -> dict[TopicPartition, int]:
        """Records not yet read, per assigned partition: end offset - the consumer's position.

        One ``end_offsets`` call on the broker (a request on Kafka): call it every few seconds,
        not per batch. Call it from the thread that runs the loop (consumers are not thread-safe).
        """
        consumer = self._consumer
        if consumer is None:
            return {}
        assigned = consumer.assignment()
        if not assigned:
            return {}
        ends = self.broker.end_offsets(assigned)
        return {tp: max(0, ends.get(tp, 0) - consumer.position(tp)) for tp in assigned}

    def _close(self, ok: bool) -> None:
        """Commit (after a clean stop) or drop (after a failure) what is pending, then leave the group."""
        producer, consumer = self._producer, self._consumer
        try:
            if ok:
                try:
                    self.commit()
                except BaseException:
                    self._failed = True
                    self._pending.clear()
                    raise
            else:
                # Outputs of the pending batches may not be stored: their offsets must not move.
                self._failed = True
                self._pending.clear()
                if self._in_transaction and self._transactions is not None:
                    try:
                        self._transactions.abort()
                    except Exception:
                        log.exception("stream app %s: aborting the transaction failed", self.config.app)
        finally:
            self._buffer = []
            try:
                if consumer is not None:
                    consumer.close()  # leaves the group: the partitions go to other members at once
            finally:
                if producer is not None:
                    producer.close()
            log.info("stream app %s stopped%s", self.config.app, "" if ok else " after an error")


def _produce(producer: Producer, topic: str, out: Output) -> None:
    producer.produce_batch(
        topic,
        out.values,
        out.keys,
        timestamps=out.timestamps,
        headers=out.headers if any(out.headers) else None,
    )
