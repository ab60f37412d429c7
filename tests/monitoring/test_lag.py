"""Consumer lag as the monitor measures it, on every broker: end offset - position, per assigned partition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from headwater.monitoring.metrics import new_registry
from headwater.monitoring.stream import StreamMonitor
from headwater.stream.app import StreamApp
from headwater.stream.broker import Broker
from headwater.stream.kernel import StreamKernel
from tests.stream.conftest import broker, unique

__all__ = ["broker", "unique"]

N = 240


class LagLog(StreamMonitor):
    """Keeps (records read so far, lag measured) at every turn of the loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[tuple[int, dict[tuple[str, int], int]]] = []

    def tick(self, kernel: StreamKernel) -> None:
        super().tick(kernel)
        self.history.append((self.app.metrics.records_in, dict(self.lag)))


def test_lag_is_what_is_left_to_read_after_every_batch(broker: Broker, unique: Callable[[str], str]) -> None:
    source, sink = unique("lag-in"), unique("lag-out")
    broker.create_topic(source, 3)
    broker.create_topic(sink, 1)
    producer = broker.producer()
    producer.produce_batch(source, [b'{"i": %d}' % i for i in range(N)], [b"%d" % i for i in range(N)])
    producer.flush()
    producer.close()

    app = StreamApp(unique("lagger"), max_batch_records=25, max_batch_latency=0)
    app.stream(source).to(sink)
    monitor = LagLog(app, registry=new_registry(process=False), lag_interval=0.0)
    with monitor:
        app.run(broker, stop_when_idle=True, handle_signals=False, monitor=monitor)

    assert app.metrics.records_in == N
    measured = [(read, lag) for read, lag in monitor.history if len(lag) == 3]
    assert measured, monitor.history
    # At every measurement, what was read plus what is left is everything that was written.
    for read, lag in measured:
        assert read + sum(lag.values()) == N, (read, lag)
    assert sum(measured[0][1].values()) > 0  # measured while there was work left
    assert measured[-1][1] == {(source, p): 0 for p in range(3)}
    gauges = monitor.exporter.lag.collect()[0].samples if monitor.exporter else []
    assert {(s.labels["topic"], s.labels["partition"]): s.value for s in gauges} == {
        (source, str(p)): 0.0 for p in range(3)}
