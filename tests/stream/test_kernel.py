"""The kernel's loop: micro-batch bounds, the commit protocol, stops, rebalances, transactions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
import polars as pl
import pytest

from headwater.errors import UserError
from headwater.stream.app import StreamApp
from headwater.stream.broker import BrokerError, TopicPartition
from headwater.stream.memory import MemoryBroker, MemoryProducer
from headwater.stream.testing import run_app


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@contextmanager
def running(app: StreamApp, broker: MemoryBroker) -> Iterator[None]:
    """Run ``app`` in a thread; on exit stop it, wait for it, and re-raise what it raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            app.run(broker, handle_signals=False)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield
    finally:
        app.stop()
        thread.join(10)
    assert not thread.is_alive(), "the app did not stop"
    if errors:
        raise errors[0]


def out_count(broker: MemoryBroker, topic: str = "out") -> int:
    info = broker.describe_topic(topic)
    return sum(info.end_offsets.values())


def committed(broker: MemoryBroker, group: str, topic: str) -> dict[int, int | None]:
    return {lag.tp.partition: lag.committed for lag in broker.group_lag(group, [topic])}


def recording_app(name: str, heights: list[int], **options: Any) -> StreamApp:
    app = StreamApp(name, **options)
    app.stream("in").map_batch(lambda df: heights.append(df.height) or df).to("out")
    return app


# -- micro-batch bounds ---------------------------------------------------------------


def test_batches_hold_at_most_max_batch_records() -> None:
    heights: list[int] = []
    result = run_app(recording_app("bounded", heights), inputs={"in": [{"n": i} for i in range(20)]},
                     max_batch_records=7)
    assert heights == [7, 7, 6]
    assert result.metrics["batches"] == 3 and result.metrics["commits"] == 3


def test_a_full_batch_does_not_wait_for_the_latency_bound() -> None:
    heights: list[int] = []
    broker = MemoryBroker()
    for topic in ("in", "out"):
        broker.create_topic(topic)
    app = recording_app("full", heights, max_batch_records=5, max_batch_latency=3600)
    with running(app, broker):
        broker.producer().produce_batch("in", [b'{"n": 1}'] * 5)
        wait_for(lambda: out_count(broker) == 5)
    assert heights == [5]


def test_a_partial_batch_goes_once_the_latency_bound_passes() -> None:
    heights: list[int] = []
    broker = MemoryBroker()
    for topic in ("in", "out"):
        broker.create_topic(topic)
    app = recording_app("partial", heights, max_batch_records=1_000_000, max_batch_latency=0.01)
    with running(app, broker):
        broker.producer().produce_batch("in", [b'{"n": 1}'] * 3)
        wait_for(lambda: out_count(broker) == 3)
    assert heights == [3]


# -- at-least-once ----------------------------------------------------------------------


class FailingFlush(MemoryProducer):
    def flush(self, timeout: float | None = None) -> None:
        raise BrokerError("the disk is full")


class FlakyBroker(MemoryBroker):
    """Producers whose flush fails while ``failing`` is set (records still land, as a half-done send would)."""

    failing = True

    def producer(self, **config: object) -> MemoryProducer:
        return FailingFlush(self) if self.failing else super().producer(**config)


def test_offsets_move_only_after_a_flush_and_a_restart_reprocesses() -> None:
    broker = FlakyBroker()
    broker.failing = False
    app = StreamApp("careful")
    app.stream("in").map(lambda v: {"n": v["n"] * 10}).to("out")
    broker.create_topic("in")
    broker.create_topic("out")
    broker.producer().produce_batch("in", [b'{"n": %d}' % i for i in range(5)])
    broker.failing = True
    with pytest.raises(BrokerError, match="disk is full"):
        app.run(broker, stop_when_idle=True, handle_signals=False)
    assert committed(broker, "careful", "in") == {0: None}
    assert app.metrics.commits == 0

    broker.failing = False
    result = run_app(app, broker=broker)
    # Each input is in the output at least once: the unflushed first try, then the reprocessing.
    assert sorted(result.values("out"), key=lambda v: v["n"]) == sorted([{"n": n * 10} for n in range(5)] * 2,
                                                                          key=lambda v: v["n"])
    assert committed(broker, "careful", "in") == {0: 5}


def test_a_stop_finishes_the_batch_commits_and_loses_nothing() -> None:
    broker = MemoryBroker()
    broker.create_topic("in", 2)
    broker.create_topic("out", 1)
    app = StreamApp("graceful", max_batch_records=50, max_batch_latency=0.01)
    app.stream("in").map_batch(lambda df: df.with_columns(seen=pl.lit(True))).to("out")
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        producer = broker.producer()
        i = 0
        while feeding.is_set():
            producer.produce_batch("in", [b'{"i": %d}' % (i + j) for j in range(10)], [b"%d" % j for j in range(10)])
            i += 10
            time.sleep(0.001)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        with running(app, broker):
            wait_for(lambda: out_count(broker) >= 300)
    finally:
        feeding.clear()
        feeder.join(5)
    done = committed(broker, "graceful", "in")
    assert all(offset is not None and offset > 0 for offset in done.values())
    # Everything up to the committed offsets is in the output, and nothing after them.
    inputs = read(broker, "in")
    outputs = [msgspec.json.decode(value)["i"] for _, _, value in read(broker, "out")]
    assert len(outputs) == sum(o or 0 for o in done.values())
    expected = {msgspec.json.decode(v)["i"] for p, o, v in inputs if o < (done[p] or 0)}
    assert set(outputs) == expected


def read(broker: MemoryBroker, topic: str) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record of ``topic``."""
    info = broker.describe_topic(topic)
    consumer = broker.consumer(None)
    consumer.assign([TopicPartition(topic, p) for p in range(info.partitions)])
    rows = []
    for batch in consumer.poll_batch(10_000_000, timeout=1):
        rows.extend((batch.partition, o, v) for o, v in zip(batch.offsets, batch.values, strict=True) if v is not None)
    consumer.close()
    return rows


def test_partitions_move_between_instances_without_loss() -> None:
    broker = MemoryBroker()
    broker.create_topic("in", 4)
    broker.create_topic("out", 1)
    n = 400
    values = [b'{"i": %d}' % i for i in range(n)]

    def instance() -> StreamApp:
        app = StreamApp("shared", max_batch_records=20, max_batch_latency=0.005)
        app.stream("in").map(lambda v: v).to("out")
        return app

    first, second = instance(), instance()
    producer = broker.producer()
    producer.produce_batch("in", values[: n // 2], [b"%d" % i for i in range(n // 2)])
    with running(first, broker):
        wait_for(lambda: out_count(broker) > 0)
        with running(second, broker):
            producer.produce_batch("in", values[n // 2 :], [b"%d" % i for i in range(n // 2, n)])
            wait_for(lambda: all(lag.lag == 0 for lag in broker.group_lag("shared", ["in"])))
    outputs = [value for _, _, value in read(broker, "out")]
    assert sorted(set(outputs)) == sorted({v.replace(b" ", b"") for v in values})
    assert first.metrics.records_in > 0 and second.metrics.records_in > 0
    assert first.metrics.records_in + second.metrics.records_in == len(outputs)


# -- exactly-once --------------------------------------------------------------------------


def test_exactly_once_is_refused_by_a_broker_without_transactions() -> None:
    app = StreamApp("eos", processing_guarantee="exactly_once")
    app.stream("in").to("out")
    with pytest.raises(UserError, match="needs a broker with transactions; MemoryBroker has none") as info:
        run_app(app, inputs={"in": [{"a": 1}]})
    assert "at_least_once" in (info.value.hint or "")


class TransactionLog(MemoryProducer):
    """A MemoryProducer that logs the transaction calls the kernel makes (offsets kept, not committed)."""

    def __init__(self, broker: MemoryBroker, log: list[Any]) -> None:
        super().__init__(broker)
        self.log = log

    def produce_batch(self, topic: str, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None,
                      **kwargs: Any) -> None:
        self.log.append(("produce", topic, len(values)))
        super().produce_batch(topic, values, keys, **kwargs)

    def flush(self, timeout: float | None = None) -> None:
        self.log.append("flush")

    def begin(self) -> None:
        self.log.append("begin")

    def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int], consumer: Any) -> None:
        self.log.append(("offsets", {str(tp): o for tp, o in offsets.items()}))

    def commit(self) -> None:
        self.log.append("commit")

    def abort(self) -> None:
        self.log.append("abort")


class TransactionalMemoryBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[Any] = []
        self.ids: list[str] = []

    def transactional_producer(self, transactional_id: str, **config: object) -> TransactionLog:
        self.ids.append(transactional_id)
        return TransactionLog(self, self.log)


def test_exactly_once_commits_outputs_and_offsets_in_one_transaction() -> None:
    broker = TransactionalMemoryBroker()
    app = StreamApp("eos", processing_guarantee="exactly_once", max_batch_records=2)
    app.stream("in").map(lambda v: 1 / v["n"]).to("out")
    run_app(app, inputs={"in": [{"n": 1}, {"n": 0}, {"n": 2}]}, broker=broker)
    assert broker.log == [
        "begin", ("produce", "out", 1), ("produce", "eos.dlq", 1), "flush", ("offsets", {"in[0]": 2}), "commit",
        "begin", ("produce", "out", 1), "flush", ("offsets", {"in[0]": 3}), "commit",
    ]
    assert broker.ids[0].startswith("eos.")
    assert committed(broker, "eos", "in") == {0: None}  # offsets went only through the transaction


def test_exactly_once_aborts_the_open_transaction_when_the_app_fails() -> None:
    broker = TransactionalMemoryBroker()
    app = StreamApp("eos", processing_guarantee="exactly_once", producer_config={"transactional.id": "eos-1"})
    app.stream("in").map(lambda v: v).to("out")
    app.stream("in").to("missing")
    broker.create_topic("in")
    broker.create_topic("out")
    with pytest.raises(UserError, match="missing"):
        app.run(broker, stop_when_idle=True, handle_signals=False)
    assert broker.log == []  # refused before any transaction

    bad = StreamApp("eos2", processing_guarantee="exactly_once", producer_config={"transactional.id": "eos-2"})
    bad.stream("in").map_batch(lambda df: df.head(0)).to("out")
    with pytest.raises(UserError, match="rows"):
        run_app(bad, inputs={"in": [{"a": 1}]}, broker=broker)
    assert broker.ids == ["eos-2"]
    assert broker.log == []  # the step failed before begin: nothing to abort

    class FailingCommit(TransactionLog):
        def commit(self) -> None:
            raise BrokerError("the coordinator moved")

    broker.transactional_producer = lambda tid, **c: FailingCommit(broker, broker.log)  # type: ignore[method-assign]
    with pytest.raises(BrokerError, match="coordinator"):
        run_app(app, inputs={"in": [{"a": 1}]}, broker=broker)
    assert broker.log[-1] == "abort"
