""":class:`StreamMonitor`: what one running stream-app instance tells the outside world.

It is the kernel's :class:`~headwater.stream.metrics.BatchMonitor` (called once per batch
and once per turn of the loop, in the kernel's thread) and the sink of
:mod:`headwater.monitoring.hooks` while it is active. From that it keeps

- Prometheus metrics (when given a registry): :class:`~headwater.monitoring.metrics.StreamExporter`;
- consumer lag per assigned partition, measured every ``lag_interval`` seconds (one
  ``end_offsets`` call to the broker, never per batch);
- a status snapshot written every ``interval`` seconds by a background thread to
  ``$HEADWATER_HOME/stream/apps/<app>/<instance-id>.json`` (see :mod:`headwater.monitoring.status`).

Per batch it does a few dictionary updates under a lock and appends the batch time to a
ring buffer: nothing per record except for dead letters (already the slow path).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from headwater.monitoring import hooks
from headwater.monitoring.status import STATUS_FORMAT, instance_id, write_status

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from headwater.monitoring.metrics import StreamExporter
    from headwater.settings import Settings
    from headwater.stream.app import StreamApp
    from headwater.stream.broker import RecordBatch
    from headwater.stream.chunk import Context
    from headwater.stream.kernel import StreamKernel

log = logging.getLogger("headwater.monitoring")

LATENCY_WINDOW = 1000  # batches kept for the snapshot's latency percentiles


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return 0.0
    rank = max(1, round(q * len(ordered) + 0.5 - 1e-9))
    return ordered[min(len(ordered), rank) - 1]


def _error_text(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StreamMonitor:
    """Monitoring of one running instance of ``app``; see the module docstring.

    ``registry``: export Prometheus metrics there (None: no metrics). ``status_path``:
    where to write snapshots (None: no snapshots). Use as a context manager around
    ``app.run(monitor=monitor)``: entering starts the snapshot thread and the hooks, leaving
    writes the final snapshot (``stopped``, or ``failed`` with the error).
    """

    def __init__(
        self,
        app: StreamApp,
        *,
        registry: CollectorRegistry | None = None,
        status_path: Path | None = None,
        interval: float = 2.0,
        lag_interval: float = 5.0,
        recent: int = 20,
        prediction_buckets: Sequence[float] | None = None,
        instance: int | None = None,
        metrics_port: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.status_path = status_path
        self.interval = interval
        self.lag_interval = lag_interval
        self.instance = instance
        self.metrics_port = metrics_port
        self.instance_id = instance_id()
        self._clock = clock
        self._lock = threading.Lock()
        from headwater.monitoring.metrics import PREDICTION_BUCKETS, StreamExporter, prediction_histogram

        # Kept with or without Prometheus: the status snapshot shows the distribution too.
        self.prediction_histogram = prediction_histogram(prediction_buckets or PREDICTION_BUCKETS)
        self.exporter: StreamExporter | None = None
        if registry is not None:
            self.exporter = StreamExporter(registry, app.name, quality=self.quality_counts,
                                           predictions=self.prediction_histogram)
            self.exporter.declare(app.topology.source_topics(), app.topology.sink_topics())
        self.in_by_topic: dict[str, int] = {}
        self.dead_by_topic: dict[str, int] = {}
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.last_batch_size = 0
        self.lag: dict[tuple[str, int], int] = {}
        self.lag_measured_at: str | None = None
        self.alerts: collections.deque[dict[str, Any]] = collections.deque(maxlen=recent)
        self.dead_letters: collections.deque[dict[str, Any]] = collections.deque(maxlen=recent)
        self.predicted: dict[tuple[str, str], int] = {}
        # Data checks and drift: what hooks reported, plus what headwater.quality steps count themselves.
        self.violations: dict[tuple[str, str], int] = {}
        self.drift: dict[tuple[str, str], int] = {}
        self._check_steps, self._alert_topics = _quality_steps(app)
        self._last_checks: dict[tuple[str, str], int] = {}
        self.started = _now()
        self._next_lag = 0.0
        self._previous: tuple[float, dict[str, int]] | None = None  # (time, counters) of the last write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._restore: hooks.StreamSink | None = None
        self.state = "running"
        self.error: str | None = None

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> StreamMonitor:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        failed = exc is not None and not isinstance(exc, KeyboardInterrupt | SystemExit)
        self.close(state="failed" if failed else "stopped", error=_error_text(exc) if failed and exc else None)

    def start(self) -> None:
        """Receive the hooks of this process and start writing snapshots."""
        self._restore = hooks.activate(self)
        if self.status_path is not None:
            self._write()
            self._thread = threading.Thread(target=self._loop, name=f"status:{self.app.name}", daemon=True)
            self._thread.start()

    def close(self, *, state: str = "stopped", error: str | None = None) -> None:
        """Stop the snapshot thread, write the final snapshot, give the hooks back."""
        if hooks.active() is self:
            hooks.activate(self._restore)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.state, self.error = state, error
        if self.status_path is not None:
            self._write()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def _write(self) -> None:
        assert self.status_path is not None
        try:
            write_status(self.status_path, self.snapshot())
        except Exception:  # a full disk must not stop the app; the snapshot only goes stale
            log.warning("stream app %s: cannot write its status to %s", self.app.name, self.status_path,
                        exc_info=True)

    # -- the kernel's calls (its thread) ----------------------------------------------

    def batch_done(self, batches: list[RecordBatch], records_out: Mapping[str, int], ctx: Context,
                   seconds: float) -> None:
        """Count one committed batch: input by topic, dead letters by source topic, its time."""
        ins: dict[str, int] = {}
        for b in batches:
            ins[b.topic] = ins.get(b.topic, 0) + len(b)
        dead: dict[str, int] = {}
        if ctx.dead:
            table = ctx.table
            at = _now()
            for d in ctx.dead:
                topic = table.topics[d.src]
                dead[topic] = dead.get(topic, 0) + 1
            for d in ctx.dead[-(self.dead_letters.maxlen or 0):]:
                self.dead_letters.append({"at": at, "step": d.step, "topic": table.topics[d.src],
                                          "partition": table.partitions[d.src], "offset": table.offsets[d.src],
                                          "error": _error_text(d.error)})
        if self._alert_topics:
            for topic in self._alert_topics:
                if records_out.get(topic):
                    self._drift_records(ctx.outputs[topic].values)
        with self._lock:
            for topic, n in ins.items():
                self.in_by_topic[topic] = self.in_by_topic.get(topic, 0) + n
            for topic, n in dead.items():
                self.dead_by_topic[topic] = self.dead_by_topic.get(topic, 0) + n
            self.latencies.append(seconds)
            self.last_batch_size = sum(ins.values())
        if self.exporter is not None:
            self.exporter.batch(ins, records_out, dead, seconds)

    def tick(self, kernel: StreamKernel) -> None:
        """Measure the lag every ``lag_interval`` seconds (the kernel's thread owns the consumer)."""
        now = self._clock()
        if now < self._next_lag:
            return
        self._next_lag = now + self.lag_interval
        try:
            lag = {(tp.topic, tp.partition): n for tp, n in kernel.lag().items()}
        except Exception:  # the broker is away: the next turn of the loop will say so louder
            log.debug("stream app %s: measuring lag failed", self.app.name, exc_info=True)
            return
        if not lag:  # not assigned yet (joining the group): look again soon
            self._next_lag = now + min(1.0, self.lag_interval)
        with self._lock:
            self.lag = lag
            self.lag_measured_at = _now()
        if self.exporter is not None:
            self.exporter.set_lag(lag)
            self.exporter.set_models({m["step"]: (m["model"], m["version"]) for m in self.models() if m["version"]})

    # -- the hooks' calls (steps, in the kernel's thread) -------------------------------

    def predictions(self, step: str, model: str, values: Any) -> None:
        n = self.prediction_histogram.observe_many((self.app.name, step, model), values)
        with self._lock:
            self.predicted[(step, model)] = self.predicted.get((step, model), 0) + n

    def check_violations(self, check: str, column: str, count: int, message: str) -> None:
        with self._lock:
            self.violations[(check, column)] = self.violations.get((check, column), 0) + count
            self.alerts.append({"at": _now(), "kind": "check", "check": check, "column": column, "count": count,
                                "message": message})

    def drift_alert(self, check: str, column: str, message: str) -> None:
        with self._lock:
            self.drift[(check, column)] = self.drift.get((check, column), 0) + 1
            self.alerts.append({"at": _now(), "kind": "drift", "check": check, "column": column, "count": 1,
                                "message": message})

    def _drift_records(self, values: list[bytes | None]) -> None:
        """Alert records of ``monitor_drift`` steps, as produced (JSON: feature, metric, value, threshold)."""
        import json

        for raw in values:
            try:
                alert = json.loads(raw) if raw is not None else {}
            except ValueError:
                alert = {}
            if not isinstance(alert, dict):
                alert = {}
            metric, feature = str(alert.get("metric") or "drift"), str(alert.get("feature") or "unknown")
            value, threshold = alert.get("value"), alert.get("threshold")
            message = (f"{metric} of {feature} is {value:.3g}, above {threshold:.3g}"
                       if isinstance(value, int | float) and isinstance(threshold, int | float) else "")
            self.drift_alert(metric, feature, message)

    def _check_totals(self) -> dict[tuple[str, str], int]:
        """Violations counted by the app's ``check`` steps: (kind, column) -> rows, summed over the steps."""
        totals: dict[tuple[str, str], int] = {}
        for step in self._check_steps:
            violations = step.snapshot().get("violations") or {}
            for kind, columns in violations.items():
                for column, n in columns.items():
                    totals[(str(kind), str(column))] = totals.get((str(kind), str(column)), 0) + int(n)
        return totals

    def quality_counts(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """(violations, drift alerts), each (check, column) -> count: what the metrics export."""
        violations = self._check_totals()
        with self._lock:
            for key, n in self.violations.items():
                violations[key] = violations.get(key, 0) + n
            return violations, dict(self.drift)

    # -- the snapshot -----------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The model each predict step of the app scores with now (version None before its first batch)."""
        out = []
        for node in self.app.topology.nodes:
            step = getattr(node, "step", None)
            ref = getattr(step, "model_ref", None)
            if step is None or ref is None:
                continue
            scorer = getattr(step, "scorer", None)
            out.append({"step": node.name, "model": str(ref), "version": getattr(scorer, "label", None)})
        return out

    def snapshot(self) -> dict[str, Any]:
        """The status as plain data (the format is in :mod:`headwater.monitoring.status`)."""
        app = self.app
        m = app.metrics
        checks = self._check_totals() if self._check_steps else {}
        with self._lock:
            # Violations that check steps counted since the last snapshot become alerts.
            for (kind, column), n in sorted(checks.items()):
                grown = n - self._last_checks.get((kind, column), 0)
                if grown > 0:
                    self.alerts.append({"at": _now(), "kind": "check", "check": kind, "column": column,
                                        "count": grown, "message": f"{grown} record(s) with {kind} on {column}"})
            self._last_checks = checks
            latencies = sorted(self.latencies)
            counters: dict[str, Any] = {
                "records_in": m.records_in, "records_out": m.records_out,
                "records_dead_lettered": m.records_dead_lettered, "batches": m.batches, "commits": m.commits,
                "in_by_topic": dict(self.in_by_topic), "out_by_topic": dict(m.out_by_topic),
                "dead_by_topic": dict(self.dead_by_topic),
            }
            lag = dict(self.lag)
            lag_at = self.lag_measured_at
            alerts = list(self.alerts)
            predicted = [{"step": s, "model": mv, "count": n,
                          "histogram": self.prediction_histogram.counts((app.name, s, mv))}
                         for (s, mv), n in self.predicted.items()]
            dead = list(self.dead_letters)
            last_size = self.last_batch_size
        now = self._clock()
        totals = {k: counters[k] for k in ("records_in", "records_out", "records_dead_lettered")}
        rates = dict.fromkeys(totals, 0.0)
        if self._previous is not None and now > self._previous[0]:
            elapsed = now - self._previous[0]
            rates = {k: round((v - self._previous[1].get(k, 0)) / elapsed, 3) for k, v in totals.items()}
        self._previous = (now, totals)
        env_instance = os.environ.get("HEADWATER_STREAM_INSTANCE")
        return {
            "format": STATUS_FORMAT,
            "app": app.name,
            "group_id": app.group_id,
            "instance_id": self.instance_id,
            "instance": self.instance if self.instance is not None else (
                int(env_instance) if env_instance and env_instance.isdigit() else None),
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "state": self.state,
            "error": self.error,
            "started": self.started,
            "heartbeat": _now(),
            "interval": self.interval,
            "metrics_port": self.metrics_port,
            "sources": app.topology.source_topics(),
            "sinks": app.topology.sink_topics(),
            "dlq_topic": app.dlq_topic,
            "counters": counters,
            "rates": rates,
            "batch_latency": {
                "count": len(latencies),
                "p50": _percentile(latencies, 0.50), "p95": _percentile(latencies, 0.95),
                "p99": _percentile(latencies, 0.99), "max": latencies[-1] if latencies else 0.0,
            },
            "batch_size": {"mean": m.records_in / m.batches if m.batches else 0.0, "last": last_size},
            "partitions": [{"topic": t, "partition": p, "lag": n} for (t, p), n in sorted(lag.items())],
            "lag": {"total": sum(lag.values()), "measured_at": lag_at},
            "models": self.models(),
            "predictions": predicted,
            "recent_alerts": alerts,
            "recent_dead_letters": dead,
        }


@contextlib.contextmanager
def monitored(app: StreamApp, settings: Settings, *, metrics_port: int = 0,
              instance: int | None = None) -> Iterator[StreamMonitor]:
    """Monitoring of ``app`` as ``headwater stream run`` does it: a status snapshot every 2 s and,
    when ``metrics_port`` is not 0, ``/metrics`` on 127.0.0.1 at that port. Prediction buckets
    come from ``$HEADWATER_PREDICTION_BUCKETS`` (default: :data:`~headwater.monitoring.metrics.PREDICTION_BUCKETS`)."""
    from headwater.monitoring.status import status_path

    registry = None
    buckets = None
    if metrics_port:
        from headwater.monitoring.metrics import PREDICTION_BUCKETS_VARIABLE, new_registry, parse_buckets

        text = os.environ.get(PREDICTION_BUCKETS_VARIABLE, "").strip()
        buckets = parse_buckets(text) if text else None
        registry = new_registry()
    monitor = StreamMonitor(app, registry=registry, status_path=status_path(settings, app.name, instance_id()),
                            prediction_buckets=buckets, instance=instance)
    server = None
    if registry is not None:
        from headwater.monitoring.prometheus import serve

        server = serve(metrics_port, registry)
        monitor.metrics_port = server.port
    try:
        with monitor:
            yield monitor
    finally:
        if server is not None:
            server.close()


def _quality_steps(app: StreamApp) -> tuple[list[Any], list[str]]:
    """The app's data-check steps (they count violations themselves) and the topics its drift alerts go to."""
    checks: list[Any] = []
    alert_topics: list[str] = []
    for node in app.topology.nodes:
        step = getattr(node, "step", None)
        if getattr(step, "kind", None) == "check" and callable(getattr(step, "snapshot", None)):
            checks.append(step)
        parents = getattr(node, "parents", None) or []
        topic = getattr(node, "topic", None)
        if (topic is not None and getattr(node, "kind", None) == "to" and parents
                and getattr(parents[0][0], "kind", None) == "monitor_drift" and parents[0][1] == 1):
            alert_topics.append(topic)
    return checks, alert_topics
