"""Counters of a stream app: records in, out and dead-lettered, batches, batch latency, commits.

The kernel reports through the two methods of :class:`MetricsRecorder`, once per batch and
once per commit, never per record. :class:`StreamMetrics` keeps plain numbers (what
``app.metrics`` shows); a Prometheus exporter will implement the same two methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from headwater.stream.broker import RecordBatch
    from headwater.stream.chunk import Context
    from headwater.stream.kernel import StreamKernel

# Upper bounds (seconds) of the latency histogram, Prometheus-style (cumulative, then +Inf).
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class MetricsRecorder(Protocol):
    """What the kernel tells about its work."""

    def batch_done(
        self, *, records_in: int, records_out: Mapping[str, int], dead_letters: int, seconds: float
    ) -> None:
        """One micro-batch processed, flushed and committed in ``seconds`` (poll wait excluded)."""
        ...

    def committed(self, *, partitions: int) -> None:
        """Offsets of ``partitions`` partitions committed."""
        ...


class BatchMonitor(Protocol):
    """An optional watcher of the kernel (``headwater.monitoring.stream.StreamMonitor``): Prometheus
    metrics and status snapshots. Called in the kernel's thread, once per batch and once per loop."""

    def batch_done(self, batches: list[RecordBatch], records_out: Mapping[str, int], ctx: Context,
                   seconds: float) -> None:
        """One micro-batch committed: its input batches, outputs by topic, its context (dead letters)."""
        ...

    def tick(self, kernel: StreamKernel) -> None:
        """After each turn of the loop, with or without a batch (must be cheap: throttle what is not)."""
        ...


@dataclass
class LatencyStats:
    """Count, sum, last, max and a cumulative histogram of durations in seconds."""

    count: int = 0
    total: float = 0.0
    last: float = 0.0
    max: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.last = seconds
        self.max = max(self.max, seconds)
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break
        else:
            self.buckets[-1] += 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def histogram(self) -> dict[str, int]:
        """Cumulative counts by upper bound, as Prometheus exposes them (``le`` -> count)."""
        out: dict[str, int] = {}
        running = 0
        for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.buckets, strict=True):
            running += n
            out[bound] = running
        return out


@dataclass
class StreamMetrics:
    """Plain counters of one app (cumulative across runs of the app in this process)."""

    records_in: int = 0
    records_out: int = 0
    records_dead_lettered: int = 0
    batches: int = 0
    commits: int = 0
    out_by_topic: dict[str, int] = field(default_factory=dict)
    batch_latency: LatencyStats = field(default_factory=LatencyStats)

    def batch_done(
        self, *, records_in: int, records_out: Mapping[str, int], dead_letters: int, seconds: float
    ) -> None:
        self.records_in += records_in
        self.records_dead_lettered += dead_letters
        self.batches += 1
        for topic, n in records_out.items():
            self.records_out += n
            self.out_by_topic[topic] = self.out_by_topic.get(topic, 0) + n
        self.batch_latency.observe(seconds)

    def committed(self, *, partitions: int) -> None:
        self.commits += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data (for logs, the CLI and tests)."""
        lat = self.batch_latency
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "records_dead_lettered": self.records_dead_lettered,
            "batches": self.batches,
            "commits": self.commits,
            "out_by_topic": dict(self.out_by_topic),
            "batch_latency": {"count": lat.count, "mean": lat.mean, "last": lat.last, "max": lat.max,
                              "histogram": lat.histogram()},
        }
