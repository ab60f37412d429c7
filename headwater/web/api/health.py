"""``GET /api/v1/health``: is the server up, and can it read the metadata database."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from headwater.web.deps import Ctx

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The server answers; ``database`` says whether the metadata store is reachable."""

    status: str
    database: str


@router.get("/health", response_model=Health, summary="Liveness and database check")
def health(ctx: Ctx) -> Health:
    """The server is up and the metadata database answers."""
    ctx.store.list_pools()
    return Health(status="ok", database="ok")
