"""The REST API routers, mounted by :func:`headwater.web.app.create_app` under ``/api/v1``."""

from fastapi import APIRouter

from headwater.web.api import health

router = APIRouter()
router.include_router(health.router)

__all__ = ["router"]
