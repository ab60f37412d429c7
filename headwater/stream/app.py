"""StreamApp: declare streams over topics, then run them as micro-batches.

::

    import polars as pl
    from headwater.stream.app import StreamApp
    from headwater.stream.serde import Json

    app = StreamApp("scorer", broker=broker, max_batch_records=5_000, max_batch_latency=0.05)
    houses = app.stream("houses", value=Json())
    priced = houses.filter(pl.col("price") > 0).map_batch(
        lambda df: df.with_columns(price_per_sqft=pl.col("price") / pl.col("sqft"))
    )
    cheap, dear = priced.branch(pl.col("price") < 300_000)
    cheap.to("houses.cheap")
    dear.to("houses.dear")

    app.run()   # until SIGTERM/SIGINT: finish the batch in flight, flush, commit, leave the group

Declaring does no I/O; :meth:`StreamApp.run` opens the consumer and producer and hands
them to the :class:`~headwater.stream.kernel.StreamKernel`. Records that cannot be
decoded or that make a step raise go to ``<name>.dlq`` (see :mod:`headwater.stream.dlq`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from headwater.errors import UserError
from headwater.stream._common import OFFSET_RESETS, validate_topic_name
from headwater.stream.broker import Broker
from headwater.stream.dlq import dlq_topic
from headwater.stream.dsl import SourceNode, Stream, StreamDefinitionError, Topology
from headwater.stream.kernel import GUARANTEES, KernelConfig, StreamKernel
from headwater.stream.metrics import BatchMonitor, StreamMetrics
from headwater.stream.serde import Json, Serde

log = logging.getLogger("headwater.stream")


class StreamApp:
    """A stream app: its name (also its consumer group by default), broker and batching.

    ``max_batch_records`` and ``max_batch_latency`` (seconds) bound a micro-batch: it is
    processed as soon as either is reached. ``processing_guarantee`` is
    ``"at_least_once"`` (default) or ``"exactly_once"`` (Kafka transactions; any other
    broker refuses it when the app starts). ``consumer_config`` and ``producer_config``
    go to the broker's clients unchanged (e.g. librdkafka settings).
    """

    def __init__(
        self,
        name: str,
        broker: Broker | None = None,
        *,
        group_id: str | None = None,
        max_batch_records: int = 10_000,
        max_batch_latency: float = 0.1,
        processing_guarantee: str = "at_least_once",
        auto_offset_reset: str = "earliest",
        consumer_config: Mapping[str, Any] | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            validate_topic_name(dlq_topic(name))
        except UserError:
            raise StreamDefinitionError(
                f"invalid stream app name {name!r}",
                hint="use letters, digits, '.', '_' and '-': the name also names the dead-letter topic <name>.dlq",
            ) from None
        if not isinstance(max_batch_records, int) or max_batch_records < 1:
            raise StreamDefinitionError(f"max_batch_records must be a positive integer, got {max_batch_records!r}")
        if not isinstance(max_batch_latency, int | float) or max_batch_latency < 0:
            raise StreamDefinitionError(f"max_batch_latency must be seconds >= 0, got {max_batch_latency!r}")
        if processing_guarantee not in GUARANTEES:
            raise StreamDefinitionError(
                f"processing_guarantee must be one of {', '.join(GUARANTEES)}, got {processing_guarantee!r}"
            )
        if auto_offset_reset not in OFFSET_RESETS:
            raise StreamDefinitionError(f"auto_offset_reset must be 'earliest' or 'latest', got {auto_offset_reset!r}")
        self.name = name
        self.broker = broker
        self.group_id = group_id or name
        self.max_batch_records = max_batch_records
        self.max_batch_latency = float(max_batch_latency)
        self.processing_guarantee = processing_guarantee
        self.auto_offset_reset = auto_offset_reset
        self.consumer_config = dict(consumer_config or {})
        self.producer_config = dict(producer_config or {})
        self.topology = Topology()
        self.metrics = StreamMetrics()
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return f"StreamApp({self.name!r})"

    @property
    def dlq_topic(self) -> str:
        """Where records that could not be processed go: ``<name>.dlq``."""
        return dlq_topic(self.name)

    def stream(self, topic: str, *, value: Serde | None = None, key: Serde | None = None) -> Stream:
        """The records of ``topic``, values decoded by ``value`` (default ``Json()``).

        ``key`` (optional) validates input keys: a record whose key it cannot decode is
        dead-lettered. Keys are passed on as they are either way.
        """
        validate_topic_name(topic)
        for label, serde in (("value", value), ("key", key)):
            if serde is not None and not isinstance(serde, Serde):
                raise StreamDefinitionError(
                    f"stream({topic!r}, {label}=...) takes a serde such as Json(), Bytes() or Schema(...), "
                    f"got {serde!r}"
                )
        node = self.topology.add(SourceNode(f"decode:{topic}", topic, value or Json(), key))
        return Stream(self.topology, node)

    def describe(self) -> str:
        """The topology, one node per line."""
        return self.topology.describe()

    def stop(self) -> None:
        """Finish the batch in flight, flush, commit and return from :meth:`run` (thread- and signal-safe)."""
        self._stopping.set()

    def run(self, broker: Broker | None = None, *, stop_when_idle: bool = False, handle_signals: bool = True,
            monitor: BatchMonitor | None = None) -> None:
        """Process micro-batches until :meth:`stop`, SIGTERM or SIGINT, then commit and leave the group.

        ``broker`` overrides the one given at construction. ``monitor`` (e.g. a
        :class:`headwater.monitoring.stream.StreamMonitor`) sees every batch: Prometheus
        metrics and status snapshots; none by default. ``stop_when_idle`` returns once
        every assigned partition is read to its end (tests, catch-up jobs). With
        ``handle_signals`` (and in the main thread) SIGTERM and SIGINT ask for a graceful
        stop; a second signal acts as usual (KeyboardInterrupt or termination), which
        commits nothing of the batch in flight.
        """
        broker = broker or self.broker
        if broker is None:
            raise UserError(f"stream app {self.name!r} has no broker", hint="pass broker= to StreamApp() or run()")
        if not self.topology.sources:
            raise StreamDefinitionError(
                f"stream app {self.name!r} reads no topic", hint="declare one with app.stream('topic')"
            )
        config = KernelConfig(
            app=self.name,
            group_id=self.group_id,
            dlq_topic=self.dlq_topic,
            max_batch_records=self.max_batch_records,
            max_batch_latency=self.max_batch_latency,
            processing_guarantee=self.processing_guarantee,
            auto_offset_reset=self.auto_offset_reset,
            consumer_config=self.consumer_config,
            producer_config=self.producer_config,
        )
        kernel = StreamKernel(self.topology, broker, config, self.metrics, stopping=self._stopping, monitor=monitor)
        opened = _open_steps(self.topology, broker)  # e.g. a reference table restores its changelog
        restore = self._install_signal_handlers() if handle_signals else _nothing
        try:
            kernel.run(stop_when_idle=stop_when_idle)
        finally:
            _close_steps(opened)
            restore()
            self._stopping.clear()  # the app can run again

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return _nothing
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.getsignal(sig) for sig in signals}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("stream app %s: %s received, finishing the batch in flight", self.name, signal.strsignal(signum))
            self.stop()
            restore()  # a second signal is not graceful

        for sig in signals:
            signal.signal(sig, on_signal)
        return restore


def _nothing() -> None:
    return None


def _open_steps(topology: Topology, broker: Broker) -> list[Any]:
    """Open the steps that hold something for a whole run (they have ``open(broker)`` and ``close()``).

    A reference table (``Stream.enrich``) restores itself from its changelog here and then
    follows it, so the first micro-batch already sees the whole table.
    """
    opened: list[Any] = []
    try:
        for node in topology.nodes:
            step: Any = getattr(node, "step", None)
            if callable(getattr(step, "open", None)) and callable(getattr(step, "close", None)):
                step.open(broker)
                opened.append(step)
    except BaseException:
        _close_steps(opened)
        raise
    return opened


def _close_steps(opened: list[Any]) -> None:
    for step in reversed(opened):
        try:
            step.close()
        except Exception:
            log.exception("closing step %s failed", getattr(step, "name", step))
