"""The page of one task try: details, rendered fields, the live log; clear and mark.

The log streams by offset: the page shows what the log holds, and ends with a small poller element
that asks for the bytes after it (``.../log?offset=N``); each answer is the new text followed by
a new poller at the new offset, swapped in place of the old one. Once the try has ended and the
log was read to its end, the answer carries no poller, so polling stops by itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from headwater.errors import HeadwaterError, UserError
from headwater.orchestration.states import TaskState
from headwater.web.auth import require_read, require_write
from headwater.web.deps import Ctx
from headwater.web.services import runs as runs_service
from headwater.web.services import tasks as tasks_service
from headwater.web.ui.errors import html_errors
from headwater.web.ui.render import _q, back, flash, fragment, page

router = APIRouter(dependencies=[Depends(require_read)])

#: States in which a task instance may still write to its latest try's log.
LIVE_STATES = frozenset({"scheduled", "queued", "running", "up_for_retry", "up_for_reschedule", "none"})
#: The most of a log the first page load shows (the rest follows through the poller at once).
FIRST_LOAD = 1024 * 1024


def _task_url(dag_id: str, task_id: str, run_id: str) -> str:
    return f"/dags/{_q(dag_id)}/tasks/{_q(task_id)}?run_id={_q(run_id)}"


def _try_param(request: Request) -> int | None:
    # "try" is a Python keyword, so it is read from the query string rather than as an argument.
    raw = request.query_params.get("try")
    try:
        return int(raw) if raw else None
    except ValueError:
        raise UserError(f"try must be a number, got {raw!r}", hint="use ?try=1") from None


def _log_part(ctx: Ctx, dag_id: str, run_id: str, task_id: str, attempt: int | None, offset: int,
              limit: int) -> dict[str, Any]:
    """Log text from ``offset`` and what the poller needs next (``more`` is False once complete)."""
    try:
        chunk = tasks_service.read_log(ctx, dag_id, run_id, task_id, attempt, offset=offset, limit=limit)
    except UserError as exc:
        ti = ctx.store.get_task_instance(dag_id, run_id, task_id)
        waiting = ti is not None and ti.try_number == 0 and ti.state.value in LIVE_STATES
        # Not run yet: keep asking (the first try's log appears when it starts); otherwise say why.
        return {"text": "" if waiting else f"({exc})", "next_offset": offset, "more": waiting, "at_end": True}
    at_end = chunk.next_offset - chunk.offset < limit
    return {"text": chunk.text, "next_offset": chunk.next_offset, "more": not chunk.complete, "at_end": at_end}


@router.get("/dags/{dag_id:path}/tasks/{task_id:path}/log", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def log_tail(request: Request, ctx: Ctx, dag_id: str, task_id: str, run_id: str, offset: int = 0) -> HTMLResponse:
    """The log text after ``offset``, then the next poller (none once the try's log is complete)."""
    attempt = _try_param(request)
    part = _log_part(ctx, dag_id, run_id, task_id, attempt, max(offset, 0), tasks_service.LOG_CHUNK)
    # The try has ended: the state badge at the top of the page is updated with this last answer.
    ti = ctx.store.get_task_instance(dag_id, run_id, task_id) if not part["more"] else None
    return fragment(request, "ui/_log_tail.html", log_url=_log_url(dag_id, task_id, run_id, attempt),
                    final_state=ti.state.value if ti is not None else None, **part)


def _log_url(dag_id: str, task_id: str, run_id: str, attempt: int | None) -> str:
    url = f"/dags/{_q(dag_id)}/tasks/{_q(task_id)}/log?run_id={_q(run_id)}"
    return url if attempt is None else f"{url}&try={attempt}"


@router.get("/dags/{dag_id:path}/tasks/{task_id:path}", response_class=HTMLResponse, include_in_schema=False)
@html_errors
def task_page(request: Request, ctx: Ctx, dag_id: str, task_id: str, run_id: str | None = None) -> HTMLResponse:
    if not run_id:
        runs = ctx.store.list_runs(dag_id, limit=1)
        if not runs:
            raise UserError(f"DAG {dag_id!r} has no runs yet", hint="trigger a run first")
        run_id = runs[0].run_id
    ti = tasks_service.get_task_instance(ctx, dag_id, run_id, task_id)
    attempt = _try_param(request)
    selected = attempt if attempt is not None else (ti.tries[-1].try_number if ti.tries else ti.try_number)
    shown = next((t for t in ti.tries if t.try_number == selected), None)
    # A try is pinned in the log URL once chosen, so a retry starting meanwhile does not switch logs.
    pinned = selected if ti.tries else None
    part = _log_part(ctx, dag_id, run_id, task_id, pinned, 0, FIRST_LOAD)
    return page(
        request, "ui/task.html", section="dags", dag_id=dag_id, ti=ti, shown=shown or ti, selected_try=selected,
        run=runs_service.run_info(runs_service.get_run_record(ctx, dag_id, run_id)),
        log_url=_log_url(dag_id, task_id, run_id, pinned), final_state=None, **part,
    )


@router.post("/dags/{dag_id:path}/tasks/{task_id:path}/clear", include_in_schema=False,
             dependencies=[Depends(require_write)])
def clear(request: Request, ctx: Ctx, dag_id: str, task_id: str, run_id: Annotated[str, Form()],
          downstream: Annotated[str | None, Form()] = None) -> Response:
    try:
        result = tasks_service.clear(ctx, dag_id, run_id, [task_id], downstream=downstream == "true")
        n = len(result.cleared)
        flash(request, "info", f"cleared {n} task instance{'' if n == 1 else 's'}"
              + (f" ({', '.join(result.cleared)})" if n else "") + "; a scheduler runs them again")
    except HeadwaterError as exc:
        flash(request, "error", str(exc), getattr(exc, "hint", None))
    return back(_task_url(dag_id, task_id, run_id))


@router.post("/dags/{dag_id:path}/tasks/{task_id:path}/mark", include_in_schema=False,
             dependencies=[Depends(require_write)])
def mark(request: Request, ctx: Ctx, dag_id: str, task_id: str, run_id: Annotated[str, Form()],
         state: Annotated[str, Form()]) -> Response:
    try:
        if state not in ("success", "failed"):
            raise UserError(f"a task can be marked success or failed, not {state!r}", hint="to run it again, clear it")
        result = tasks_service.mark(ctx, dag_id, run_id, [task_id], TaskState(state))
        flash(request, "info", f"{task_id} marked {state}; the run is {result.run.state.value}")
    except HeadwaterError as exc:
        flash(request, "error", str(exc), getattr(exc, "hint", None))
    return back(_task_url(dag_id, task_id, run_id))
