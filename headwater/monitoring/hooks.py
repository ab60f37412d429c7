"""What stream steps report: predictions, data-check violations, drift alerts.

Steps do not know the app or the monitor that runs them, so they report here and the
:class:`~headwater.monitoring.stream.StreamMonitor` of the running app (one per process, set
while it runs) receives it. Without a running monitor every call is a global lookup and
an ``is None`` test: call once per batch, never per record. This module imports nothing
heavy (no prometheus-client).

A data-quality step::

    from headwater.monitoring import hooks

    bad = frame["sqft"].is_null().sum()
    if bad:
        hooks.check_violations("not_null", "sqft", bad, message=f"{bad} rows without sqft")
    if psi > 0.2:
        hooks.drift_alert("psi", "sqft", message=f"PSI {psi:.2f} > 0.2")
"""

from __future__ import annotations

from typing import Any, Protocol


class StreamSink(Protocol):
    """The receiver (a running ``StreamMonitor``)."""

    def predictions(self, step: str, model: str, values: Any) -> None: ...

    def check_violations(self, check: str, column: str, count: int, message: str) -> None: ...

    def drift_alert(self, check: str, column: str, message: str) -> None: ...


_sink: StreamSink | None = None


def activate(sink: StreamSink | None) -> StreamSink | None:
    """Make ``sink`` receive the reports of this process; returns the one it replaces (to restore)."""
    global _sink
    previous, _sink = _sink, sink
    return previous


def active() -> StreamSink | None:
    """The sink receiving reports now, if any."""
    return _sink


def predictions(step: str, model: str, values: Any) -> None:
    """A predict step scored a batch: ``values`` (an array or series) with model version ``model``."""
    sink = _sink
    if sink is not None:
        sink.predictions(step, model, values)


def check_violations(check: str, column: str, count: int, message: str = "") -> None:
    """``count`` rows of a batch failed data check ``check`` on ``column`` (call once per check and batch)."""
    sink = _sink
    if sink is not None and count:
        sink.check_violations(check, column, int(count), message)


def drift_alert(check: str, column: str, message: str = "") -> None:
    """A drift check (``psi``, ``ks``, ...) on ``column`` raised an alert."""
    sink = _sink
    if sink is not None:
        sink.drift_alert(check, column, message)
