"""Monitoring: Prometheus metrics of the scheduler and stream apps, and stream-app status snapshots.

- :mod:`headwater.monitoring.metrics`: every metric headwater exports (names, kinds, labels)
  and the objects that record them, on a registry per process.
- :mod:`headwater.monitoring.prometheus`: ``/metrics`` over HTTP on 127.0.0.1
  (:func:`~headwater.monitoring.prometheus.serve`) or as an ASGI app for the web server
  (:func:`~headwater.monitoring.prometheus.metrics_app`).
- :mod:`headwater.monitoring.stream`: :class:`~headwater.monitoring.stream.StreamMonitor`, what
  a running stream app reports through (metrics, lag, status snapshots).
- :mod:`headwater.monitoring.status`: the snapshot files and
  :func:`~headwater.monitoring.status.read_app_statuses` for the UI.
- :mod:`headwater.monitoring.hooks`: what stream steps call (predictions, data-check
  violations, drift alerts): no-ops unless a monitor is active.

Nothing here is imported by ``import headwater``; prometheus-client is imported only by
the modules that serve or define metrics.
"""

from __future__ import annotations

from typing import Any


def mount_metrics(app: Any, settings: Any = None) -> None:
    """Serve ``/metrics`` on a FastAPI/Starlette ``app``: this process's metrics and the stream-app
    instances by state. ``settings`` defaults to ``app.state.web.settings`` (the web server's)."""
    from headwater.monitoring.prometheus import metrics_app

    if settings is None:
        settings = getattr(getattr(app.state, "web", None), "settings", None)
    app.add_route("/metrics", metrics_app(settings=settings), include_in_schema=False)
