"""Pages of streams: running apps, topics, consumer groups with lag, dead letters, live charts.

Two sources: the broker (topics, end offsets, committed offsets: through
:mod:`headwater.web.services.streams`) and the status snapshots each running app instance writes
(:mod:`headwater.monitoring.status`: rates, batch latency, predictions, alerts, recent dead
letters). ``/streams/live.json`` is the snapshots reduced to what the charts plot; the page polls
it every 2 s and appends a point per series (uPlot draws them).
"""

from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from headwater.errors import HeadwaterError, UserError
from headwater.web.auth import require_read
from headwater.web.deps import Ctx
from headwater.web.services import streams as streams_service
from headwater.web.ui.errors import html_errors
from headwater.web.ui.render import fragment, page

router = APIRouter(dependencies=[Depends(require_read)])

#: Dead letters shown on an app's dead-letter page.
DEAD_LETTERS = 50


@dataclass
class AppRow:
    """One running (or recently stopped) instance of a stream app, from its status snapshot."""

    app: str
    instance_id: str
    state: str
    stale: bool
    heartbeat: Any
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, *path: str, default: Any = None) -> Any:
        value: Any = self.data
        for key in path:
            if not isinstance(value, dict):
                return default
            value = value.get(key)
        return default if value is None else value


def app_rows(ctx: Ctx) -> list[AppRow]:
    """Status snapshots of the stream apps; empty when the monitoring package is not installed."""
    try:
        status: Any = importlib.import_module("headwater.monitoring.status")
    except ModuleNotFoundError:
        return []
    # remove_dead=False: looking at a page must not delete anything.
    found = status.read_app_statuses(ctx.settings, now=ctx.clock.now(), remove_dead=False)
    return [AppRow(s.app, s.instance_id, s.state, s.stale, s.heartbeat, s.data) for s in found]


def _time(value: Any) -> dt.datetime | None:
    """An ISO 8601 time from a snapshot, or None (shown as a dash) when it is not one."""
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _overview(ctx: Ctx) -> tuple[Any, str | None]:
    try:
        return streams_service.overview(ctx), None
    except HeadwaterError as exc:
        return None, f"{exc}" + (f" ({exc.hint})" if exc.hint else "")


def _context(ctx: Ctx) -> dict[str, Any]:
    apps = app_rows(ctx)
    overview, broker_error = _overview(ctx)
    dead = sorted(
        ({**d, "app": a.app, "when": _time(d.get("at"))} for a in apps
         for d in a.get("recent_dead_letters", default=[]) if isinstance(d, dict)),
        key=lambda d: str(d.get("at", "")), reverse=True,
    )[:20]
    alerts = sorted(
        ({**x, "app": a.app, "when": _time(x.get("at"))} for a in apps
         for x in a.get("recent_alerts", default=[]) if isinstance(x, dict)),
        key=lambda d: str(d.get("at", "")), reverse=True,
    )[:20]
    return {"apps": apps, "overview": overview, "broker_error": broker_error, "recent_dead": dead,
            "alerts": alerts}


@router.get("/streams", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def streams_page(request: Request, ctx: Ctx) -> HTMLResponse:
    return page(request, "ui/streams.html", section="streams", **_context(ctx))


@router.get("/streams/fragment", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def streams_fragment(request: Request, ctx: Ctx) -> HTMLResponse:
    return fragment(request, "ui/_streams_live.html", **_context(ctx))


@router.get("/streams/live.json", include_in_schema=False)
def live(ctx: Ctx) -> JSONResponse:
    """What the charts plot, now: per app, summed over its running instances.

    ``{"at": <unix seconds>, "apps": {"<app>": {"in": r/s, "out": r/s, "dead": r/s, "p50": s, "p95": s,
    "lag": n, "predictions": {"<step> <model>": count}, "histogram": [[upper, count], ...] | null,
    "alerts": n}}}``
    """
    out: dict[str, dict[str, Any]] = {}
    for row in app_rows(ctx):
        if row.state != "running":
            continue
        agg = out.setdefault(row.app, {"in": 0.0, "out": 0.0, "dead": 0.0, "p50": 0.0, "p95": 0.0, "lag": 0,
                                       "predictions": {}, "histogram": None, "alerts": 0})
        agg["in"] += float(row.get("rates", "records_in", default=0.0))
        agg["out"] += float(row.get("rates", "records_out", default=0.0))
        agg["dead"] += float(row.get("rates", "records_dead_lettered", default=0.0))
        # Latency of the slowest instance: the one that holds the app back.
        agg["p50"] = max(agg["p50"], float(row.get("batch_latency", "p50", default=0.0)))
        agg["p95"] = max(agg["p95"], float(row.get("batch_latency", "p95", default=0.0)))
        agg["lag"] += int(row.get("lag", "total", default=0))
        agg["alerts"] += len(row.get("recent_alerts", default=[]))
        for p in row.get("predictions", default=[]):
            if isinstance(p, dict):
                key = f"{p.get('step', '')} {p.get('model', '')}".strip()
                agg["predictions"][key] = agg["predictions"].get(key, 0) + int(p.get("count", 0))
                hist = p.get("histogram")
                if isinstance(hist, list):  # [[upper bound, count], ...] when the monitor keeps one
                    agg["histogram"] = _add_histograms(agg["histogram"], hist)
    return JSONResponse({"at": ctx.clock.now().timestamp(), "apps": out})


def _add_histograms(total: list[list[float]] | None, more: list[Any]) -> list[list[float]]:
    pairs = [[float(b), float(c)] for b, c in (x for x in more if isinstance(x, list | tuple) and len(x) == 2)]
    if total is None or [b for b, _ in total] != [b for b, _ in pairs]:
        return pairs if total is None else total
    return [[b, c + d] for (b, c), (_, d) in zip(total, pairs, strict=True)]


@router.get("/streams/dead-letters/{app}", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def dead_letters_page(request: Request, ctx: Ctx, app: str) -> HTMLResponse:
    try:
        letters = streams_service.dead_letters(ctx, app, limit=DEAD_LETTERS)
        error = None
    except UserError as exc:
        letters, error = [], exc
    return page(request, "ui/dead_letters.html", section="streams", app=app, letters=letters, error=error)
