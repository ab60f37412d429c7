"""Pages of DAGs: the list, and one DAG's grid, graph, Gantt, runs and code; pause and trigger."""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from headwater.errors import HeadwaterError, UserError
from headwater.orchestration.runs import parse_date
from headwater.store.base import DagRecord
from headwater.web.auth import require_read, require_write
from headwater.web.deps import Ctx
from headwater.web.services import dags as dags_service
from headwater.web.services import runs as runs_service
from headwater.web.ui import forms, queries
from headwater.web.ui.errors import html_errors
from headwater.web.ui.layout import layout_gantt, layout_graph
from headwater.web.ui.render import back, flash, fragment, page, safe_next

router = APIRouter(dependencies=[Depends(require_read)])

#: Runs per grid page (columns) and per runs-table page.
GRID_PAGE = 25
RUNS_PAGE = 50
#: DAGs per page of the DAG list.
DAGS_PAGE = 50
#: The graph's room on a page (px); deeper DAGs are drawn top to bottom (see layout_graph).
GRAPH_WIDTH = 1240
#: htmx stops polling an element when a response has this status.
HTMX_STOP_POLLING = 286
#: Runs offered in the run picker of the graph and Gantt views.
PICKER = 30


def _record(ctx: Ctx, dag_id: str) -> DagRecord:
    return dags_service.get_record(ctx, dag_id)


@router.get("/", include_in_schema=False)
def home() -> Response:
    return back("/dags")


@router.get("/dags", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def dags_page(request: Request, ctx: Ctx, tag: str | None = None, q: str | None = None,
              page_no: Annotated[int, Query(alias="page")] = 1) -> HTMLResponse:
    listing, page_no, pages = _dag_listing(ctx, tag, q, page_no)
    records = ctx.store.list_dags()
    tags = sorted({t for r in records for t in r.spec.tags})
    return page(
        request, "ui/dags.html", section="dags", rows=listing.dags, fields=_fields(records, listing), tags=tags,
        tag=tag or "", q=q or "", import_errors=listing.import_errors, dags_folder=str(ctx.settings.dags_folder),
        page=page_no, pages=pages, total=listing.total, page_href=_dags_href(tag, q),
    )


@router.get("/dags/fragment", response_class=HTMLResponse, include_in_schema=False)
def dags_fragment(request: Request, ctx: Ctx, tag: str | None = None, q: str | None = None,
                  page_no: Annotated[int, Query(alias="page")] = 1) -> HTMLResponse:
    listing, page_no, pages = _dag_listing(ctx, tag, q, page_no)
    return fragment(request, "ui/_dag_table.html", rows=listing.dags, fields=_fields(ctx.store.list_dags(), listing),
                    page=page_no, pages=pages, total=listing.total, page_href=_dags_href(tag, q))


def _dag_listing(ctx: Ctx, tag: str | None, q: str | None, page_no: int) -> tuple[dags_service.DagList, int, int]:
    """One page of the DAG list, the page's number (clamped) and the number of pages."""
    first = dags_service.list_dags(ctx, tag=tag or None, search=q or None, last_runs=queries.RECENT_RUNS,
                                   limit=DAGS_PAGE, offset=(max(page_no, 1) - 1) * DAGS_PAGE)
    clamped, pages = _pages(first.total, DAGS_PAGE, page_no)
    if clamped == page_no:
        return first, page_no, pages
    return (dags_service.list_dags(ctx, tag=tag or None, search=q or None, last_runs=queries.RECENT_RUNS,
                                   limit=DAGS_PAGE, offset=(clamped - 1) * DAGS_PAGE), clamped, pages)


def _dags_href(tag: str | None, q: str | None) -> Any:
    query = urlencode({k: v for k, v in (("q", q), ("tag", tag)) if v})
    return lambda n: f"/dags?{query}&page={n}" if query else f"/dags?page={n}"


def _fields(records: list[DagRecord], listing: dags_service.DagList) -> dict[str, list[forms.Field]]:
    """The trigger form's inputs of the DAGs shown."""
    shown = {d.dag_id for d in listing.dags}
    return {r.dag_id: forms.trigger_fields(r.spec) for r in records if r.dag_id in shown}


def _pages(total: int, size: int, page_no: int) -> tuple[int, int]:
    pages = max(1, math.ceil(total / size))
    return min(max(page_no, 1), pages), pages


def _grid_context(ctx: Ctx, record: Any, page_no: int, run_id: str | None = None) -> dict[str, Any]:
    total = queries.count_runs(ctx.store, record.dag_id)
    page_no, pages = _pages(total, GRID_PAGE, page_no)
    newest_first = queries.run_page(ctx.store, record.dag_id, limit=GRID_PAGE, offset=(page_no - 1) * GRID_PAGE)
    runs = list(reversed(newest_first))  # newest on the right, like Airflow's grid
    durations = [r.duration or 0.0 for r in runs]
    longest = max(durations, default=0.0) or 1.0
    dag_id = record.dag_id
    cells = queries.ti_states(ctx.store, dag_id, [r.run_id for r in runs])
    # The details panel: the run asked for, else the newest on the page.
    selected = next((r for r in runs if r.run_id == run_id), runs[-1] if runs else None)
    counts: dict[str, int] = {}
    if selected is not None:
        for (rid, _), (state, _) in cells.items():
            if rid == selected.run_id:
                counts[state] = counts.get(state, 0) + 1
    tasks = record.spec.topological_order()
    # States laid out row by row here, not looked up cell by cell in the template (2,500 cells a page).
    rows = [(t, [cells.get((r.run_id, t), ("none", 0))[0] for r in runs]) for t in tasks]
    return {
        "dag_id": dag_id,
        "tasks": tasks,
        "runs": runs,
        "rows": rows,
        "selected": selected,
        "picked": runs.index(selected) if selected is not None else -1,
        "counts": sorted(counts.items(), key=lambda kv: -kv[1]),
        "run_param": run_id,
        "bar_heights": [max(6, round(60 * d / longest)) for d in durations],
        "page": page_no, "pages": pages, "total": total,
        "page_href": lambda n: f"/dags/{_q(dag_id)}/grid?page={n}",
    }


def _q(value: str) -> str:
    from headwater.web.ui.render import _q as quote

    return quote(value)


def _dag_page(request: Request, ctx: Ctx, record: DagRecord, template: str, view: str, **extra: Any) -> HTMLResponse:
    extra.setdefault("run_id", None)
    detail = dags_service.get_dag(ctx, record.dag_id, last_runs=1)
    return page(request, template, section="dags", dag=detail, view=view,
                fields={record.dag_id: forms.trigger_fields(record.spec)}, **extra)


@router.get("/dags/{dag_id:path}/grid/fragment", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def grid_fragment(request: Request, ctx: Ctx, dag_id: str, page: int = 1, run_id: str | None = None) -> HTMLResponse:
    record = _record(ctx, dag_id)
    return fragment(request, "ui/_grid.html", **_grid_context(ctx, record, page, run_id))


@router.get("/dags/{dag_id:path}/grid", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def grid_page(request: Request, ctx: Ctx, dag_id: str, page: int = 1, run_id: str | None = None) -> HTMLResponse:
    record = _record(ctx, dag_id)
    return _dag_page(request, ctx, record, "ui/dag_grid.html", "grid", **_grid_context(ctx, record, page, run_id))


def _picked_run(ctx: Ctx, dag_id: str, run_id: str | None) -> tuple[Any, list[queries.RunDot]]:
    choices = queries.run_page(ctx.store, dag_id, limit=PICKER, offset=0)
    if run_id:
        run = ctx.store.get_run(dag_id, run_id)
        if run is None:
            raise UserError(f"DAG {dag_id!r} has no run {run_id!r}", hint="pick a run from the grid")
        if all(c.run_id != run_id for c in choices):
            choices.insert(0, queries.RunDot(run.run_id, str(run.state), run.logical_date, run.start_date,
                                             run.end_date, str(run.run_type)))
        return run, choices
    run = ctx.store.get_run(dag_id, choices[0].run_id) if choices else None
    return run, choices


def _poll_status(run: Any) -> int:
    """200 while the run may still change; htmx's "stop polling" status once it has finished."""
    return HTMX_STOP_POLLING if run is None or run.state.finished else 200


def _graph_context(ctx: Ctx, record: Any, run: Any) -> dict[str, Any]:
    spec = record.spec
    order = spec.topological_order()
    upstream = {t: list(spec.tasks[t].upstream) for t in order}
    states = {}
    if run is not None:
        states = {ti.task_id: str(ti.state) for ti in ctx.store.list_task_instances(record.dag_id, run.run_id)}
    operators = {t: spec.tasks[t].operator for t in order}
    groups = {t: spec.tasks[t].groups for t in order if spec.tasks[t].groups}
    graph = layout_graph(upstream, states, operators, groups, fit_width=GRAPH_WIDTH)
    return {"dag_id": record.dag_id, "graph": graph, "run": run}


@router.get("/dags/{dag_id:path}/graph/fragment", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def graph_fragment(request: Request, ctx: Ctx, dag_id: str, run_id: str | None = None) -> HTMLResponse:
    record = _record(ctx, dag_id)
    run, _ = _picked_run(ctx, dag_id, run_id)
    return fragment(request, "ui/_graph.html", status_code=_poll_status(run), **_graph_context(ctx, record, run))


@router.get("/dags/{dag_id:path}/graph", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def graph_page(request: Request, ctx: Ctx, dag_id: str, run_id: str | None = None) -> HTMLResponse:
    record = _record(ctx, dag_id)
    run, choices = _picked_run(ctx, dag_id, run_id)
    return _dag_page(request, ctx, record, "ui/dag_graph.html", "graph", run_choices=choices,
                     **(_graph_context(ctx, record, run) | {"run_id": run.run_id if run else None}))


def _gantt_context(ctx: Ctx, record: Any, run: Any) -> dict[str, Any]:
    if run is None:
        return {"dag_id": record.dag_id, "gantt": None, "run": None}
    tis = {ti.task_id: ti for ti in ctx.store.list_task_instances(record.dag_id, run.run_id)}
    rows = [(t, str(tis[t].state), tis[t].start_date, tis[t].end_date)
            for t in record.spec.topological_order() if t in tis]
    rows.sort(key=lambda r: (r[2] is None, r[2] or ctx.clock.now()))
    return {"dag_id": record.dag_id, "gantt": layout_gantt(rows, ctx.clock.now()), "run": _with_duration(run)}


def _with_duration(run: Any) -> queries.RunDot:
    """The run as the Gantt header shows it (with its duration)."""
    return queries.RunDot(run.run_id, str(run.state), run.logical_date, run.start_date, run.end_date,
                          str(run.run_type))


@router.get("/dags/{dag_id:path}/gantt/fragment", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def gantt_fragment(request: Request, ctx: Ctx, dag_id: str, run_id: str | None = None) -> HTMLResponse:
    record = _record(ctx, dag_id)
    run, _ = _picked_run(ctx, dag_id, run_id)
    return fragment(request, "ui/_gantt.html", status_code=_poll_status(run), **_gantt_context(ctx, record, run))


@router.get("/dags/{dag_id:path}/gantt", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def gantt_page(request: Request, ctx: Ctx, dag_id: str, run_id: str | None = None) -> HTMLResponse:
    record = _record(ctx, dag_id)
    run, choices = _picked_run(ctx, dag_id, run_id)
    return _dag_page(request, ctx, record, "ui/dag_gantt.html", "gantt", run_choices=choices,
                     **(_gantt_context(ctx, record, run) | {"run_id": run.run_id if run else None}))


@router.get("/dags/{dag_id:path}/runs", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def runs_page(request: Request, ctx: Ctx, dag_id: str, page: int = 1, state: str | None = None) -> HTMLResponse:
    record = _record(ctx, dag_id)
    page_no = max(page, 1)
    states = [state] if state else None
    listing = runs_service.list_runs(ctx, dag_id, states=states, limit=RUNS_PAGE, offset=(page_no - 1) * RUNS_PAGE)
    page_no, pages = _pages(listing.total, RUNS_PAGE, page_no)
    also = f"&state={_q(state)}" if state else ""
    return _dag_page(request, ctx, record, "ui/dag_runs.html", "runs", runs=listing.items, page=page_no,
                     pages=pages, total=listing.total, state_filter=state or "",
                     page_href=lambda n: f"/dags/{_q(dag_id)}/runs?page={n}{also}")


@router.get("/dags/{dag_id:path}/code", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def code_page(request: Request, ctx: Ctx, dag_id: str) -> HTMLResponse:
    record = _record(ctx, dag_id)
    try:
        lines, error = dags_service.get_source(ctx, dag_id).source.splitlines(), ""
    except UserError as exc:
        lines, error = [], f"{exc} ({exc.hint})" if exc.hint else str(exc)
    return _dag_page(request, ctx, record, "ui/dag_code.html", "code", lines=lines, source_error=error)


@router.post("/dags/{dag_id:path}/pause", include_in_schema=False, dependencies=[Depends(require_write)])
def pause(request: Request, ctx: Ctx, dag_id: str, paused: Annotated[str, Form()],
          next: Annotated[str | None, Form()] = None) -> Response:
    target = safe_next(next, "/dags")
    try:
        dags_service.set_paused(ctx, dag_id, paused == "true")
        flash(request, "info", f"{dag_id} {'paused' if paused == 'true' else 'unpaused'}")
    except HeadwaterError as exc:
        flash(request, "error", str(exc), getattr(exc, "hint", None))
    return back(target)


@router.post("/dags/{dag_id:path}/trigger", include_in_schema=False, dependencies=[Depends(require_write)])
async def trigger(request: Request, ctx: Ctx, dag_id: str) -> Response:
    form = await request.form()
    target = safe_next(str(form.get("next") or ""), "/dags")
    raw = {k[len("param."):]: str(v) for k, v in form.items() if k.startswith("param.")}
    when = str(form.get("logical_date") or "").strip() or None
    try:
        record = _record(ctx, dag_id)
        conf = forms.form_conf(record.spec, raw)
        logical = parse_date(when) if when else None
        run_id = dags_service.trigger(ctx, dag_id, conf=conf, logical_date=logical).run_id
        flash(request, "info", f"queued run {run_id} of {dag_id}")
        if target == "/dags":
            target = f"/dags/{_q(dag_id)}/grid"
    except HeadwaterError as exc:
        flash(request, "error", str(exc), getattr(exc, "hint", None))
    return back(target)


@router.get("/dags/{dag_id:path}", include_in_schema=False)
def dag_home(dag_id: str) -> Response:
    return back(f"/dags/{_q(dag_id)}/grid")
