"""Every metric headwater exports, and the objects that record them on a registry per process.

Names start with ``headwater_``; :data:`METRICS` lists them all (the Grafana dashboard test
checks its queries against it). Nothing is registered at import: a process builds a
registry with :func:`new_registry` when it serves metrics, then :class:`SchedulerMetrics`
or :class:`StreamExporter` on it. Each process has its own registry (never
prometheus-client's global one), so tests and several apps in one process do not mix.

Cardinality (series = product of label values; keep it in the thousands):

- ``headwater_task_tries_total{dag_id, task_id, state}``: one series per task and final
  state of a try (``success``, ``failed``, ``skipped``, ``up_for_reschedule``): 100 DAGs x
  100 tasks x 4 states is 40,000 series at most, each a single number.
- ``headwater_task_try_duration_seconds{dag_id, state}``: a histogram is ``len(buckets) + 2``
  series per label set, so it has no ``task_id`` label (100 tasks x 16 series per DAG would
  be too many); per-task durations are in the store and the UI's Gantt view.
- Stream metrics are labelled by app, topic and partition (bounded by the topology);
  predictions by app, step and model version (a few versions over an app's life).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from headwater.monitoring.histogram import BulkHistogram

# -- the catalogue ----------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: ``name`` as registered (counters get ``_total`` on the wire)."""

    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str

    def samples(self) -> tuple[str, ...]:
        """The sample names Prometheus sees for this metric."""
        if self.kind == "counter":
            return (f"{self.name}_total", f"{self.name}_created")
        if self.kind == "histogram":
            return tuple(f"{self.name}{s}" for s in ("_bucket", "_sum", "_count", "_created"))
        return (self.name,)


METRICS: tuple[MetricSpec, ...] = (
    # scheduler
    MetricSpec("headwater_task_tries", "counter", ("dag_id", "task_id", "state"),
               "Task tries finished, by final state of the try (each poke of a sensor in reschedule mode "
               "counts as up_for_reschedule)"),
    MetricSpec("headwater_task_try_duration_seconds", "histogram", ("dag_id", "state"),
               "Wall time of finished task tries (worker start to end)"),
    MetricSpec("headwater_scheduler_loop_duration_seconds", "histogram", (),
               "Work of one scheduler step (sync, create runs, queue and submit, apply the events "
               "of the step before), waiting for events excluded"),
    MetricSpec("headwater_scheduler_queued_tasks", "gauge", (), "Task instances queued, not yet running"),
    MetricSpec("headwater_scheduler_running_tasks", "gauge", (), "Task instances running"),
    MetricSpec("headwater_dag_parse_duration_seconds", "histogram", (), "Time to parse one changed DAG file"),
    MetricSpec("headwater_dag_parse_errors", "counter", ("kind",),
               "DAG files that failed to load, by kind (syntax, import, cycle, duplicate, timeout, ...)"),
    # stream apps
    MetricSpec("headwater_stream_records_in", "counter", ("app", "topic"), "Records read, by source topic"),
    MetricSpec("headwater_stream_records_out", "counter", ("app", "topic"), "Records produced, by output topic"),
    MetricSpec("headwater_stream_records_dead_lettered", "counter", ("app", "topic"),
               "Records sent to the app's dead-letter topic, by the source topic they came from"),
    MetricSpec("headwater_stream_batch_records", "histogram", ("app",), "Records per micro-batch"),
    MetricSpec("headwater_stream_batch_duration_seconds", "histogram", ("app",),
               "Time to process, flush and commit one micro-batch (poll wait excluded)"),
    MetricSpec("headwater_stream_consumer_lag", "gauge", ("app", "topic", "partition"),
               "Records not yet read on an assigned partition (end offset - position), every few seconds"),
    MetricSpec("headwater_stream_prediction", "histogram", ("app", "step", "model"),
               "Values predicted by Stream.predict steps, by model version"),
    MetricSpec("headwater_stream_model_info", "gauge", ("app", "step", "model", "version"),
               "1 for the model version each predict step scores with"),
    MetricSpec("headwater_data_check_violations", "counter", ("app", "check", "column"),
               "Rows that failed a data check in a stream step"),
    MetricSpec("headwater_drift_alerts", "counter", ("app", "check", "column"), "Drift alerts raised"),
    # the web server, from the status files of stream apps
    MetricSpec("headwater_stream_instances", "gauge", ("app", "state"),
               "Stream-app instances by state (running, stopped, failed), from their status files"),
)
BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}

# Bucket bounds. Task tries run from a second to hours; a scheduler step takes milliseconds.
TRY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)
LOOP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
PARSE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_RECORD_BUCKETS = (1, 10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)
BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """``count`` upper bounds ``start, start*factor, ...`` (Prometheus' exponential buckets)."""
    if start <= 0 or factor <= 1 or count < 1:
        raise ValueError(f"exponential buckets need start > 0, factor > 1, count >= 1; got {start}, {factor}, {count}")
    # Four significant digits: 14142.13562... shows as 14140 in a le="" label.
    return tuple(float(f"{start * factor**i:.4g}") for i in range(count))


# Prices: 10k to about 7.24M in steps of sqrt(2) (20 buckets), each about 41% wider than the last.
PREDICTION_BUCKETS: tuple[float, ...] = exponential_buckets(10_000, math.sqrt(2), 20)

PREDICTION_BUCKETS_VARIABLE = "HEADWATER_PREDICTION_BUCKETS"


def parse_buckets(text: str) -> tuple[float, ...]:
    """Buckets from text: ``exp:START,FACTOR,COUNT`` or increasing bounds ``0.1,0.5,1,5``."""
    from headwater.errors import UserError

    hint = f"set {PREDICTION_BUCKETS_VARIABLE} to exp:START,FACTOR,COUNT (e.g. exp:10000,2,12) or to bounds 1,10,100"
    body = text.strip()
    try:
        if body.startswith("exp:"):
            start, factor, count = body[4:].split(",")
            return exponential_buckets(float(start), float(factor), int(count))
        bounds = tuple(float(x) for x in body.split(","))
    except ValueError as exc:
        raise UserError(f"cannot read prediction buckets {text!r}: {exc}", hint=hint) from None
    if not bounds or any(b >= a for b, a in itertools.pairwise(bounds)) or any(
            not math.isfinite(b) for b in bounds):
        raise UserError(f"prediction buckets must be finite and increasing, got {text!r}", hint=hint)
    return bounds


def new_registry(*, process: bool = True) -> CollectorRegistry:
    """A registry for this process; with ``process``, CPU, memory, open files and GC metrics too."""
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=True)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def _make(registry: CollectorRegistry, name: str, **kwargs: Any) -> Any:
    """The prometheus-client metric for the catalogue entry ``name``."""
    from prometheus_client import Counter, Gauge, Histogram

    spec = BY_NAME[name]
    cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[spec.kind]
    return cls(name, spec.help, spec.labels, registry=registry, **kwargs)


# -- scheduler --------------------------------------------------------------------------

# Final states of a try as the executor reports them (``TaskEvent.state``).
TRY_STATES = ("success", "failed", "skipped", "up_for_reschedule")


class SchedulerMetrics:
    """What a scheduler process records; the scheduler calls it at most once per event and step."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.tries = _make(registry, "headwater_task_tries")
        self.try_seconds = _make(registry, "headwater_task_try_duration_seconds", buckets=TRY_BUCKETS)
        self.loop_seconds = _make(registry, "headwater_scheduler_loop_duration_seconds", buckets=LOOP_BUCKETS)
        self.queued = _make(registry, "headwater_scheduler_queued_tasks")
        self.running = _make(registry, "headwater_scheduler_running_tasks")
        self.parse_seconds = _make(registry, "headwater_dag_parse_duration_seconds", buckets=PARSE_BUCKETS)
        self.parse_errors = _make(registry, "headwater_dag_parse_errors")

    def try_finished(self, dag_id: str, task_id: str, state: str, seconds: float | None) -> None:
        """A try ended in ``state`` after ``seconds`` (None when unknown: an orphan of a dead worker)."""
        self.tries.labels(dag_id, task_id, state).inc()
        if seconds is not None and seconds >= 0:
            self.try_seconds.labels(dag_id, state).observe(seconds)

    def step_done(self, seconds: float, *, queued: int, running: int) -> None:
        """One scheduler step did ``seconds`` of work; ``queued`` and ``running`` task instances now."""
        self.loop_seconds.observe(seconds)
        self.queued.set(queued)
        self.running.set(running)

    def parsed(self, summary: Any) -> None:
        """A refresh of the DAG folder (a ``ParseSummary``: ``parsed`` files with ``duration`` and ``errors``)."""
        for result in getattr(summary, "parsed", None) or ():
            self.parse_seconds.observe(max(0.0, float(result.duration)))
            for error in result.errors:
                self.parse_errors.labels(str(getattr(error, "kind", "") or "unknown")).inc()


# -- stream apps ------------------------------------------------------------------------


class StreamExporter:
    """Prometheus metrics of one stream app; :class:`~headwater.monitoring.stream.StreamMonitor` feeds it.

    Counter children are cached per label value, so a batch costs a few dictionary lookups
    and one ``inc`` per topic, never a call per record.
    """

    def __init__(self, registry: CollectorRegistry, app: str,
                 prediction_buckets: Sequence[float] = PREDICTION_BUCKETS,
                 quality: Callable[[], QualityCounts] | None = None,
                 predictions: BulkHistogram | None = None) -> None:

        self.registry = registry
        self.app = app
        self._in_metric = _make(registry, "headwater_stream_records_in")
        self._out_metric = _make(registry, "headwater_stream_records_out")
        self._dead_metric = _make(registry, "headwater_stream_records_dead_lettered")
        self.batch_records = _make(registry, "headwater_stream_batch_records", buckets=BATCH_RECORD_BUCKETS).labels(app)
        self.batch_seconds = _make(registry, "headwater_stream_batch_duration_seconds",
                                   buckets=BATCH_SECONDS_BUCKETS).labels(app)
        self.lag = _make(registry, "headwater_stream_consumer_lag")
        if quality is not None:
            registry.register(_QualityCollector(app, quality))
        self.model_info = _make(registry, "headwater_stream_model_info")
        self.predictions = predictions if predictions is not None else prediction_histogram(prediction_buckets)
        registry.register(self.predictions)
        self._children: dict[tuple[str, str], Any] = {}
        self._lag_series: set[tuple[str, str]] = set()
        self._models: dict[str, tuple[str, str]] = {}

    def _child(self, kind: str, topic: str) -> Any:
        key = (kind, topic)
        child = self._children.get(key)
        if child is None:
            metric = {"in": self._in_metric, "out": self._out_metric, "dead": self._dead_metric}[kind]
            child = self._children[key] = metric.labels(self.app, topic)
        return child

    def declare(self, sources: Iterable[str], sinks: Iterable[str]) -> None:
        """Show every topic's counters at 0 from the start (so ``rate()`` sees the first records)."""
        for topic in sources:
            self._child("in", topic)
            self._child("dead", topic)
        for topic in sinks:
            self._child("out", topic)

    def batch(self, records_in: Mapping[str, int], records_out: Mapping[str, int],
              dead: Mapping[str, int], seconds: float) -> None:
        """One committed micro-batch: counts by topic and its processing time."""
        total = 0
        for topic, n in records_in.items():
            self._child("in", topic).inc(n)
            total += n
        for topic, n in records_out.items():
            self._child("out", topic).inc(n)
        for topic, n in dead.items():
            self._child("dead", topic).inc(n)
        self.batch_records.observe(total)
        self.batch_seconds.observe(seconds)

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Lag per (topic, partition); partitions no longer assigned are removed."""
        now = {(topic, str(partition)) for topic, partition in lag}
        for topic, part in self._lag_series - now:
            self.lag.remove(self.app, topic, part)
        for (topic, partition), n in lag.items():
            self.lag.labels(self.app, topic, str(partition)).set(n)
        self._lag_series = now

    def set_models(self, models: Mapping[str, tuple[str, str]]) -> None:
        """The model (reference, version) each predict step scores with, by step name."""
        for step, current in models.items():
            old = self._models.get(step)
            if old == current:
                continue
            if old is not None:
                self.model_info.remove(self.app, step, *old)
            self.model_info.labels(self.app, step, *current).set(1)
            self._models[step] = current

    def predicted(self, step: str, model: str, values: Any) -> None:
        self.predictions.observe_many((self.app, step, model), values)



def prediction_histogram(buckets: Sequence[float] = PREDICTION_BUCKETS) -> BulkHistogram:
    """The ``headwater_stream_prediction`` histogram (not registered anywhere yet)."""
    from headwater.monitoring.histogram import BulkHistogram

    spec = BY_NAME["headwater_stream_prediction"]
    return BulkHistogram(spec.name, spec.help, spec.labels, buckets)


# (check, column) -> count, for data-check violations and for drift alerts.
QualityCounts = tuple[Mapping[tuple[str, str], int], Mapping[tuple[str, str], int]]


class _QualityCollector:
    """Data-check violations and drift alerts, read at scrape time from the app's monitor.

    They are cumulative counts the quality steps keep themselves (``Check.snapshot()``), so
    they are exposed as they are, with no call on the hot path.
    """

    def __init__(self, app: str, counts: Callable[[], QualityCounts]) -> None:
        self.app = app
        self.counts = counts

    def describe(self) -> Iterator[Any]:
        return iter(self._families(({}, {})))

    def collect(self) -> Iterator[Any]:
        return iter(self._families(self.counts()))

    def _families(self, counts: QualityCounts) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily

        out = []
        for name, values in zip(("headwater_data_check_violations", "headwater_drift_alerts"), counts, strict=True):
            spec = BY_NAME[name]
            family = CounterMetricFamily(name, spec.help, labels=spec.labels)
            for (check, column), n in sorted(values.items()):
                family.add_metric([self.app, check, column], n)
            out.append(family)
        return out

