"""``/runs`` and ``/dags/{dag_id}/runs/...``: runs, task instances, try logs, clear and mark."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from headwater.orchestration.states import TaskState
from headwater.web.api.deps import Writer
from headwater.web.auth import require_read
from headwater.web.deps import Ctx
from headwater.web.services import runs as service
from headwater.web.services import tasks as task_service
from headwater.web.services.pages import MAX_LIMIT

router = APIRouter(tags=["runs"], dependencies=[Depends(require_read)])

_STATE = Query(None, description="Only runs in these states (repeat the parameter).")
_TYPES = Query(None, description="Only runs of these types: scheduled, manual, backfill, test.")
_START = Query(None, description="Logical date from (inclusive); naive times are UTC.")
_END = Query(None, description="Logical date to (inclusive).")
_LIMIT = Query(50, ge=1, le=MAX_LIMIT)
_OFFSET = Query(0, ge=0)


class ClearRequest(BaseModel):
    """Which task instances of the run to reset."""

    task_ids: list[str] = Field(min_length=1)
    downstream: bool = Field(False, description="Also every task downstream of them.")
    only_failed: bool = False


class MarkRequest(BaseModel):
    """Which task instances to set, and to what."""

    task_ids: list[str] = Field(min_length=1)
    state: Literal["success", "failed"]
    downstream: bool = False


@router.get("/runs", response_model=service.RunPage, summary="Runs of every DAG, newest first")
def list_all_runs(
    ctx: Ctx,
    dag_id: str | None = None,
    state: list[str] | None = _STATE,
    run_type: list[str] | None = _TYPES,
    start: dt.datetime | None = _START,
    end: dt.datetime | None = _END,
    limit: int = _LIMIT,
    offset: int = _OFFSET,
) -> service.RunPage:
    return service.list_runs(ctx, dag_id, states=state, run_types=run_type, start=start, end=end, limit=limit,
                             offset=offset)


@router.get("/dags/{dag_id}/runs", response_model=service.RunPage, summary="Runs of one DAG, newest first")
def list_runs(
    ctx: Ctx,
    dag_id: str,
    state: list[str] | None = _STATE,
    run_type: list[str] | None = _TYPES,
    start: dt.datetime | None = _START,
    end: dt.datetime | None = _END,
    limit: int = _LIMIT,
    offset: int = _OFFSET,
) -> service.RunPage:
    return service.list_runs(ctx, dag_id, states=state, run_types=run_type, start=start, end=end, limit=limit,
                             offset=offset)


@router.get("/dags/{dag_id}/runs/{run_id}", response_model=service.RunDetail,
            summary="One run with its task instances")
def get_run(ctx: Ctx, dag_id: str, run_id: str) -> service.RunDetail:
    return service.get_run(ctx, dag_id, run_id)


@router.get("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", response_model=task_service.TaskInstanceDetail,
            summary="One task instance with its tries and rendered fields")
def get_task_instance(ctx: Ctx, dag_id: str, run_id: str, task_id: str) -> task_service.TaskInstanceDetail:
    return task_service.get_task_instance(ctx, dag_id, run_id, task_id)


@router.get("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/log", response_model=task_service.LogChunk,
            summary="The log of a try, from a byte offset (poll with next_offset while it runs)")
def get_log(
    ctx: Ctx,
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int | None = Query(None, ge=1, description="Default: the latest try."),
    offset: int = Query(0, ge=0),
) -> task_service.LogChunk:
    return task_service.read_log(ctx, dag_id, run_id, task_id, try_number, offset=offset)


@router.post("/dags/{dag_id}/runs/{run_id}/clear", response_model=task_service.ClearResult,
             summary="Reset task instances (and downstream) so they run again")
def clear(ctx: Ctx, dag_id: str, run_id: str, body: ClearRequest, _: Writer) -> task_service.ClearResult:
    return task_service.clear(ctx, dag_id, run_id, body.task_ids, downstream=body.downstream,
                              only_failed=body.only_failed)


@router.post("/dags/{dag_id}/runs/{run_id}/mark", response_model=task_service.MarkResult,
             summary="Mark task instances success or failed")
def mark(ctx: Ctx, dag_id: str, run_id: str, body: MarkRequest, _: Writer) -> task_service.MarkResult:
    return task_service.mark(ctx, dag_id, run_id, body.task_ids, TaskState(body.state), downstream=body.downstream)
