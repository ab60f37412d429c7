"""``/metrics`` in the Prometheus text format: an HTTP server per process, or an ASGI app.

- Long-running commands (``headwater scheduler``, ``headwater stream run``) take
  ``--metrics-port N`` (or ``HEADWATER_METRICS_PORT``; 0 or unset: no server) and call
  :func:`serve`, which binds 127.0.0.1 only (prometheus-client's own default is every
  interface). Under ``--instances N`` instance *i* (1..N) serves port ``N + i - 1``.
- The web server mounts :func:`metrics_app` (or calls :func:`headwater.monitoring.mount_metrics`,
  which does it at ``/metrics``): its process metrics and, given the settings, the number of
  stream-app instances by state read from their status files at each scrape::

      from headwater.monitoring.prometheus import metrics_app
      app.add_route("/metrics", metrics_app(settings=settings), include_in_schema=False)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.errors import UserError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from headwater.settings import Settings

PORT_VARIABLE = "HEADWATER_METRICS_PORT"
HOST = "127.0.0.1"


def metrics_port(option: int | None, environ: Mapping[str, str] | None = None, *, instance: int | None = None) -> int:
    """The port to serve on: ``option``, else ``$HEADWATER_METRICS_PORT``, else 0 (none).

    ``instance`` (1-based, under ``--instances``) adds ``instance - 1`` so instances do not clash.
    """
    env = os.environ if environ is None else environ
    port = option
    if port is None:
        text = env.get(PORT_VARIABLE, "").strip()
        if text:
            try:
                port = int(text)
            except ValueError:
                raise UserError(f"{PORT_VARIABLE} must be a port number, got {text!r}",
                                hint=f"set {PORT_VARIABLE}=9108, or unset it for no metrics server") from None
    port = port or 0
    if not 0 <= port <= 65535:
        raise UserError(f"metrics port must be 0..65535, got {port}", hint="0 turns the metrics server off")
    if port and instance is not None and instance > 1:
        port += instance - 1
        if port > 65535:
            raise UserError(f"metrics port of instance {instance} would be {port}, beyond 65535",
                            hint="choose a lower --metrics-port")
    return port


@dataclass
class MetricsServer:
    """A running ``/metrics`` server; :meth:`close` stops it."""

    port: int
    host: str
    _server: Any = field(repr=False)
    _thread: Any = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int, registry: CollectorRegistry, *, host: str = HOST) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread (port 0: a free one)."""
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UserError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                        hint="pick a free port with --metrics-port, or unset HEADWATER_METRICS_PORT") from None
    return MetricsServer(server.server_address[1], host, server, thread)


class MetricsEndpoint:
    """An ASGI app (a class, so Starlette's ``add_route`` serves it as it is, at ``/metrics`` without a
    redirect to ``/metrics/``); it answers every path with the metrics of ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import make_asgi_app

        self.registry = registry
        self._app = make_asgi_app(registry=registry)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)


def metrics_app(registry: CollectorRegistry | None = None, *, settings: Settings | None = None) -> MetricsEndpoint:
    """An ASGI app answering with the metrics of ``registry`` (default: a new one with process metrics).

    With ``settings`` it also exports ``headwater_stream_instances{app, state}`` from the stream
    apps' status files (read at each scrape). It handles gzip when the client asks for it.
    """
    from headwater.monitoring.metrics import new_registry

    registry = registry if registry is not None else new_registry()
    if settings is not None:
        registry.register(InstancesCollector(settings))
    return MetricsEndpoint(registry)


class InstancesCollector:
    """``headwater_stream_instances{app, state}``: stream-app instances by state, from the status files."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self) -> Iterator[Any]:
        return iter([self._family({})])

    def collect(self) -> Iterator[Any]:
        from headwater.monitoring.status import read_app_statuses

        # A scrape only reads: the files of dead processes are left for the UI's reader to remove.
        counts = Counter((s.app, s.state) for s in read_app_statuses(self.settings, remove_dead=False))
        return iter([self._family(counts)])

    @staticmethod
    def _family(counts: Mapping[tuple[str, str], int]) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        from headwater.monitoring.metrics import BY_NAME

        spec = BY_NAME["headwater_stream_instances"]
        family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
        for (app, state), n in sorted(counts.items()):
            family.add_metric([app, state], n)
        return family
