"""The REST API routers, mounted by :func:`headwater.web.app.create_app` under ``/api/v1``.

Reads depend on :func:`~headwater.web.auth.require_read`, writes on
:func:`~headwater.web.auth.require_write` (tests check every non-GET route has it).
"""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from headwater.web.api import dags, health, models, runs, session, streams


class ErrorDetail(BaseModel):
    """What went wrong (``message``), what to do (``hint``), and a stable ``code`` to branch on."""

    code: str
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    """Every error of the API: ``{"error": {"code", "message", "hint"}}``."""

    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad request (the hint says how to fix it)"},
    401: {"model": ErrorBody, "description": "No valid token or session"},
    403: {"model": ErrorBody, "description": "A session's write without its CSRF token"},
    404: {"model": ErrorBody, "description": "No such DAG, run, task, model or topic"},
    422: {"model": ErrorBody, "description": "The request does not have the expected shape"},
}

router = APIRouter(responses=_ERRORS)
for _module in (health, session, dags, runs, models, streams):
    router.include_router(_module.router)

__all__ = ["ErrorBody", "router"]
