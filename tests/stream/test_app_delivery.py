"""A stream app on every broker, and a graceful stop by signal in a real process on the embedded log."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import polars as pl
import pytest

from headwater.errors import UserError
from headwater.stream.app import StreamApp
from headwater.stream.broker import Broker, TopicPartition
from headwater.stream.log import EmbeddedBroker
from headwater.stream.testing import TestRecord, run_app


def test_an_app_runs_the_same_on_every_broker(broker: Broker, unique: Callable[[str], str]) -> None:
    source, sink, name = unique("houses"), unique("priced"), unique("pricer")
    app = StreamApp(name)
    app.stream(source).filter(pl.col("price") > 0).map_batch(
        lambda df: df.with_columns(per_sqft=pl.col("price") / pl.col("sqft"))
    ).to(sink)
    houses = [TestRecord({"price": 100.0 * i, "sqft": 10.0}, key=f"h{i}", headers=(("src", b"t"),)) for i in range(6)]
    houses.insert(3, TestRecord(b"{broken", key="bad"))
    result = run_app(app, inputs={source: houses}, partitions={source: 2}, broker=broker)
    outputs = sorted(result.outputs[sink], key=lambda r: r.value["price"])
    assert [r.value["per_sqft"] for r in outputs] == [10.0 * i for i in range(1, 6)]
    assert [r.key for r in outputs] == [f"h{i}".encode() for i in range(1, 6)]
    assert all(r.headers == (("src", b"t"),) for r in outputs)
    assert [(d.value, d.key, d.step) for d in result.dead_letters] == [(b"{broken", b"bad", f"decode:{source}")]
    lags = broker.group_lag(name, [source])
    assert all(lag.lag == 0 for lag in lags) and sum(lag.committed or 0 for lag in lags) == 7


def test_exactly_once_where_the_broker_has_transactions(broker: Broker, unique: Callable[[str], str]) -> None:
    source, sink, name = unique("in"), unique("out"), unique("eos")
    app = StreamApp(name, processing_guarantee="exactly_once", max_batch_records=3)
    app.stream(source).map(lambda v: {"n": 10 / v["n"]}).to(sink)
    inputs = {source: [{"n": 1}, {"n": 0}, {"n": 2}, {"n": 4}]}
    if not hasattr(broker, "transactional_producer"):
        with pytest.raises(UserError, match="needs a broker with transactions"):
            run_app(app, inputs=inputs, broker=broker)
        return
    # Tansu (the test broker) shows aborted records to read_committed consumers, so this
    # checks the transactional path end to end, not isolation (see the Kafka adapter's notes).
    result = run_app(app, inputs=inputs, broker=broker)
    assert result.values(sink) == [{"n": 10.0}, {"n": 5.0}, {"n": 2.5}]
    assert [d.offset for d in result.dead_letters] == [1]
    assert [lag.committed for lag in broker.group_lag(name, [source])] == [4]


CHILD = textwrap.dedent(
    """
    import sys
    import polars as pl
    from headwater.stream.app import StreamApp
    from headwater.stream.log import EmbeddedBroker

    broker = EmbeddedBroker(sys.argv[1])
    app = StreamApp("graceful", max_batch_records=50, max_batch_latency=0.01)
    announced = []

    def tag(df):
        if not announced:
            print("processing", flush=True)
            announced.append(True)
        return df.with_columns(done=pl.lit(True))

    app.stream("in").map_batch(tag).to("out")
    app.run(broker)
    broker.close()
    print("stopped", app.metrics.records_in, flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_drains_commits_and_exits_0_without_losing_records(tmp_path: Path, signum: int) -> None:
    folder = tmp_path / "topics"
    broker = EmbeddedBroker(folder)
    broker.create_topic("in", 2)
    broker.create_topic("out", 1)
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        producer = broker.producer()
        i = 0
        while feeding.is_set():
            producer.produce_batch("in", [b'{"i": %d}' % (i + j) for j in range(20)], [b"%d" % j for j in range(20)])
            producer.flush()
            i += 20
        producer.close()

    script = tmp_path / "app.py"
    script.write_text(CHILD)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    child = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "processing"
        child.send_signal(signum)  # mid-stream: the feeder is still writing
        out, err = child.communicate(timeout=30)
    finally:
        feeding.clear()
        feeder.join(10)
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert out.startswith("stopped")
    processed = int(out.split()[1])

    committed = {lag.tp.partition: lag.committed or 0 for lag in broker.group_lag("graceful", ["in"])}
    inputs = _read(broker, "in", 2)
    outputs = [msgspec.json.decode(v)["i"] for _, _, v in _read(broker, "out", 1)]
    assert sum(committed.values()) == len(outputs) == processed > 0
    expected = {msgspec.json.decode(v)["i"] for p, o, v in inputs if o < committed[p]}
    assert set(outputs) == expected  # every committed input is in the output, once
    assert len(inputs) > len(outputs)  # the feeder kept writing: the stop was mid-stream
    broker.close()


def _read(broker: Broker, topic: str, partitions: int) -> list[tuple[int, int, bytes]]:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = broker.end_offsets(tps)
    consumer = broker.consumer(None)
    consumer.assign(tps)
    rows: list[tuple[int, int, bytes]] = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for batch in consumer.poll_batch(100_000, timeout=1.0):
            rows.extend((batch.partition, o, v) for o, v in zip(batch.offsets, batch.values, strict=True) if v)
    consumer.close()
    return rows
