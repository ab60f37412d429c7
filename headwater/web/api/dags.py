"""``/dags``: the DAG list, one DAG, its source, pause/unpause and trigger."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from headwater.web.api.deps import Writer
from headwater.web.auth import require_read
from headwater.web.deps import Ctx
from headwater.web.services import dags as service
from headwater.web.services.runs import RunInfo

router = APIRouter(tags=["dags"], dependencies=[Depends(require_read)])


class TriggerRequest(BaseModel):
    """A manual run: ``conf`` is checked against the DAG's params."""

    conf: dict[str, Any] = Field(default_factory=dict, description="Values for the DAG's params (dag_run.conf).")
    logical_date: dt.datetime | None = Field(None, description="Default: now. Naive times are UTC.")
    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:+\-]{1,250}$",
                               description="Default: manual__<logical date>.")


@router.get("/dags", response_model=service.DagList, summary="Every DAG, and the files that failed to load")
def list_dags(
    ctx: Ctx,
    tag: str | None = None,
    paused: bool | None = None,
    search: str | None = Query(None, description="Part of the DAG id, any case."),
    last_runs: int = Query(5, ge=0, le=50, description="How many of each DAG's newest runs to include."),
    limit: int = Query(100, ge=1, le=1000, description="DAGs per page (by id); `total` counts them all."),
    offset: int = Query(0, ge=0, description="DAGs to skip."),
) -> service.DagList:
    return service.list_dags(ctx, tag=tag, paused=paused, search=search, last_runs=last_runs, limit=limit,
                             offset=offset)


@router.get("/import-errors", response_model=list[service.ImportErrorInfo], summary="DAG files that failed to load")
def import_errors(ctx: Ctx) -> list[service.ImportErrorInfo]:
    return service.list_import_errors(ctx)


@router.get("/dags/{dag_id}", response_model=service.DagDetail, summary="One DAG with its tasks")
def get_dag(ctx: Ctx, dag_id: str) -> service.DagDetail:
    return service.get_dag(ctx, dag_id)


@router.get("/dags/{dag_id}/source", response_model=service.DagSource, summary="The DAG's source code")
def get_source(ctx: Ctx, dag_id: str) -> service.DagSource:
    return service.get_source(ctx, dag_id)


@router.post("/dags/{dag_id}/pause", response_model=service.DagInfo, summary="Stop scheduling new runs")
def pause(ctx: Ctx, dag_id: str, _: Writer) -> service.DagInfo:
    return service.set_paused(ctx, dag_id, True)


@router.post("/dags/{dag_id}/unpause", response_model=service.DagInfo, summary="Schedule new runs again")
def unpause(ctx: Ctx, dag_id: str, _: Writer) -> service.DagInfo:
    return service.set_paused(ctx, dag_id, False)


@router.post("/dags/{dag_id}/runs", response_model=RunInfo, status_code=201, summary="Trigger a manual run")
def trigger(ctx: Ctx, dag_id: str, body: TriggerRequest, _: Writer) -> RunInfo:
    return service.trigger(ctx, dag_id, conf=body.conf, logical_date=body.logical_date, run_id=body.run_id)
