"""``/models``: the registry, and the validation gate (approve, promote, reject with a reason)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from headwater.web.api.deps import Writer
from headwater.web.auth import require_read
from headwater.web.deps import Ctx
from headwater.web.services import models as service

router = APIRouter(tags=["models"], dependencies=[Depends(require_read)])


class DecisionRequest(BaseModel):
    """Why (kept in the model's history), and who when the caller is the shared token."""

    reason: str = Field(min_length=1, max_length=2000)
    who: str | None = Field(None, max_length=64, description="Default: the logged-in user, or 'api'.")
    force: bool = Field(False, description="Approve or promote a version that was rejected.")


@router.get("/models", response_model=list[service.ModelInfo], summary="Registered models")
def list_models(ctx: Ctx) -> list[service.ModelInfo]:
    return service.list_models(ctx)


@router.get("/models/{name}", response_model=service.ModelDetail,
            summary="A model: versions, metrics side by side, aliases and their history")
def get_model(ctx: Ctx, name: str) -> service.ModelDetail:
    return service.get_model(ctx, name)


@router.get("/models/{name}/versions/{version}", response_model=service.VersionInfo,
            summary="One version: metrics, params, lineage, profile")
def get_version(ctx: Ctx, name: str, version: int) -> service.VersionInfo:
    return service.get_version(ctx, name, version)


@router.post("/models/{name}/versions/{version}/{action}", response_model=service.VersionInfo,
             summary="The validation gate: approve, promote (approve + champion) or reject")
def decide(ctx: Ctx, name: str, version: int, action: Literal["approve", "promote", "reject"],
           body: DecisionRequest, who: Writer) -> service.VersionInfo:
    name_of = body.who if who.via == "token" and body.who else who.name
    return service.decide(ctx, name, version, action, who=name_of, reason=body.reason, force=body.force)
