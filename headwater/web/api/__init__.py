"""The REST API routers, mounted by :func:`headwater.web.app.create_app` under ``/api/v1``.

Reads depend on :func:`~headwater.web.auth.require_read`, writes on
:func:`~headwater.web.auth.require_write` (tests check every non-GET route has it).
"""

from fastapi import APIRouter

from headwater.web.api import dags, health, models, runs, session, streams

router = APIRouter()
for _module in (health, session, dags, runs, models, streams):
    router.include_router(_module.router)

__all__ = ["router"]
