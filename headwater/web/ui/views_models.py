"""Pages of the model registry: models, one model's versions side by side, lineage, profile, review."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from headwater.errors import HeadwaterError, UserError
from headwater.web.auth import require_read, require_write
from headwater.web.deps import Ctx
from headwater.web.services import models as models_service
from headwater.web.services.masking import mask_mapping
from headwater.web.ui.errors import html_errors
from headwater.web.ui.render import _q, back, current_user, flash, page

router = APIRouter(dependencies=[Depends(require_read)])

#: Metric names where a larger value is better; every other metric is an error (smaller is better).
HIGHER_IS_BETTER = ("r2", "accuracy", "auc", "f1", "precision", "recall", "ap", "explained_variance")
#: Bars in a profile column's distribution.
BINS = 14


@router.get("/models", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def models_page(request: Request, ctx: Ctx) -> HTMLResponse:
    return page(request, "ui/models.html", section="models", models=models_service.list_models(ctx))


@router.get("/models/{name:path}", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def model_page(request: Request, ctx: Ctx, name: str, version: int | None = None) -> HTMLResponse:
    detail = models_service.get_model(ctx, name)
    versions = detail.versions  # newest first
    selected = next((v for v in versions if v.version == version), None) if version else None
    selected = selected or (versions[0] if versions else None)
    cols = [(split, metric) for split, metrics in sorted(detail.metric_table.items()) for metric in sorted(metrics)]
    context: dict[str, Any] = {
        "name": name, "versions": versions, "aliases": detail.aliases, "selected": selected,
        "metric_cols": cols, "table": detail.metric_table, "best": best_values(detail.metric_table),
        "history": detail.history, "lineage_rows": [], "profile": [], "profile_rows_count": 0,
    }
    if selected is not None:
        context["lineage_rows"] = lineage_rows(selected.lineage)
        context["profile"] = profile_rows(selected.profile)
        context["profile_rows_count"] = selected.profile.get("row_count")
    return page(request, "ui/model.html", section="models", **context)


@router.post("/models/{name:path}/{version}/review", include_in_schema=False, dependencies=[Depends(require_write)])
def review(request: Request, ctx: Ctx, name: str, version: int, action: Annotated[str, Form()],
           reason: Annotated[str, Form()] = "") -> Response:
    try:
        if action not in ("promote", "reject"):
            raise UserError(f"unknown review action {action!r}", hint="promote or reject")
        info = models_service.decide(ctx, name, version, action, who=current_user(request) or "web", reason=reason)
        done = "promoted to champion" if action == "promote" else "rejected"
        flash(request, "info", f"{name} v{version} {done} (status {info.status})")
    except HeadwaterError as exc:
        flash(request, "error", str(exc), getattr(exc, "hint", None))
    return back(f"/models/{_q(name)}?version={version}")


def best_values(table: dict[str, dict[str, dict[int, float]]]) -> dict[tuple[str, str], float]:
    """The best value of each (split, metric) column: largest for scores like r2, smallest for errors."""
    out = {}
    for split, metrics in table.items():
        for metric, by_version in metrics.items():
            values = list(by_version.values())
            if len(values) > 1:
                name = metric.lower()
                higher = any(name == h or name.endswith("_" + h) for h in HIGHER_IS_BETTER)
                out[(split, metric)] = max(values) if higher else min(values)
    return out


def lineage_rows(lineage: dict[str, Any]) -> list[tuple[str, str]]:
    """What made a version, as (what, value) rows; the DAG run is shown as links by the page."""
    import json

    rows = []
    for key, value in sorted(mask_mapping(lineage).items()):
        if key in ("dag_id", "run_id", "task_id"):
            continue
        if key == "splits" and isinstance(value, dict):
            for split, info in sorted(value.items()):
                text = ", ".join(f"{k} {v}" for k, v in sorted(info.items())) if isinstance(info, dict) else str(info)
                rows.append((f"data · {split}", text))
            continue
        rows.append((key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)))
    return rows


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One column of a training profile, ready to show."""

    name: str
    kind: str
    count: Any
    nulls: Any
    min: str
    median: str
    max: str
    bars: list[tuple[int, str]]
    bars_title: str


def profile_rows(profile: dict[str, Any]) -> list[ProfileRow]:
    """A profile's columns (see :mod:`headwater.ml.profile`) with a small histogram each."""
    columns = profile.get("columns")
    if not isinstance(columns, dict):  # an older or hand-made profile: {column: stats}
        columns = {k: v for k, v in profile.items() if isinstance(v, dict)}
    rows = []
    for name, col in columns.items():
        if not isinstance(col, dict):
            continue
        bars, title = _bars(col)
        rows.append(ProfileRow(
            name, str(col.get("kind", col.get("dtype", ""))), col.get("count", ""), col.get("nulls", ""),
            _num(col.get("min")), _num(col.get("median", col.get("mean"))), _num(col.get("max")), bars, title,
        ))
    return rows


def _num(value: Any) -> str:
    if value is None:
        return "\u2013"  # an en dash, like the other empty cells
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _bars(col: dict[str, Any]) -> tuple[list[tuple[int, str]], str]:
    counts = col.get("categories") or col.get("top")
    if isinstance(counts, list) and counts:
        pairs = [(str(p[0]), float(p[1])) for p in counts[:BINS] if isinstance(p, list | tuple) and len(p) == 2]
        top = max((c for _, c in pairs), default=0.0) or 1.0
        return [(max(2, round(100 * c / top)), f"{v}: {c:g}") for v, c in pairs], "counts by value"
    quantiles = col.get("quantiles")
    if isinstance(quantiles, dict) and quantiles:
        return _quantile_histogram(col, quantiles), "density from the stored quantiles"
    return [], ""


def _quantile_histogram(col: dict[str, Any], quantiles: dict[str, Any]) -> list[tuple[int, str]]:
    # The profile keeps quantiles, not bins: spread each quantile band's mass evenly over its width,
    # then sum into equal bins over [p01, p99]. Enough to see skew and spikes at a glance.
    points = sorted((float(k[1:]) / 100, float(v)) for k, v in quantiles.items()
                    if k.startswith("p") and k[1:].isdigit() and isinstance(v, int | float))
    if len(points) < 2 or points[-1][1] <= points[0][1]:
        return []
    lo, hi = points[0][1], points[-1][1]
    width = (hi - lo) / BINS
    mass = [0.0] * BINS
    for (p0, x0), (p1, x1) in itertools.pairwise(points):
        if x1 <= x0:
            mass[min(int((x0 - lo) / width), BINS - 1)] += p1 - p0
            continue
        for b in range(BINS):
            b0, b1 = lo + b * width, lo + (b + 1) * width
            overlap = max(0.0, min(b1, x1) - max(b0, x0))
            mass[b] += (p1 - p0) * overlap / (x1 - x0)
    top = max(mass) or 1.0
    return [(max(2, round(100 * m / top)), f"{lo + b * width:.4g}..{lo + (b + 1) * width:.4g}")
            for b, m in enumerate(mass)]
