"""``/streams``: topics, consumer groups and their lag, recent dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from headwater.web.auth import require_read
from headwater.web.deps import Ctx
from headwater.web.services import streams as service

router = APIRouter(tags=["streams"], dependencies=[Depends(require_read)])


@router.get("/streams", response_model=service.StreamsOverview, summary="Topics, and the lag of every app")
def overview(ctx: Ctx) -> service.StreamsOverview:
    return service.overview(ctx)


@router.get("/streams/apps", response_model=list[service.AppInstance], summary="Stream-app instances and their state")
def apps(ctx: Ctx, app: str | None = None) -> list[service.AppInstance]:
    return service.list_apps(ctx, app)


@router.get("/streams/topics/{name}", response_model=service.TopicSummary, summary="One topic's partitions")
def topic(ctx: Ctx, name: str) -> service.TopicSummary:
    return service.get_topic(ctx, name)


@router.get("/streams/groups/{group}", response_model=service.GroupInfo, summary="A consumer group's lag")
def group(ctx: Ctx, group: str, topic: Annotated[list[str] | None, Query()] = None) -> service.GroupInfo:
    return service.get_group(ctx, group, topic)


@router.get("/streams/apps/{app}/dead-letters", response_model=list[service.DeadLetter],
            summary="The newest dead letters of an app, with why")
def dead_letters(ctx: Ctx, app: str, limit: int = Query(50, ge=1, le=service.MAX_RECORDS)) -> list[service.DeadLetter]:
    return service.dead_letters(ctx, app, limit=limit)
