"""The FastAPI application of ``headwater web``: REST API under ``/api/v1`` and the UI pages.

Contract with the UI (``headwater.web.ui``, built separately):

- ``headwater.web.ui`` exposes ``router`` (a ``fastapi.APIRouter`` with the HTML pages, mounted at
  ``/``) and ``STATIC_DIR`` (a ``pathlib.Path``; mounted at ``/static``). :func:`create_app` includes
  them when the module imports; without it the app serves the API alone.
- Pages read and write through :mod:`headwater.web.services` (the same layer as the API), getting the
  :class:`~headwater.web.services.WebContext` with ``headwater.web.deps.Ctx``
  (``def page(ctx: Ctx)``; it is ``request.app.state.web``).
- Auth (:mod:`headwater.web.auth`): ``Depends(require_read)`` on pages, ``Depends(require_write)`` on
  every POST (it checks the session login and the CSRF token of the form field ``csrf_token`` or the
  header ``X-CSRF-Token``); ``csrf_token(request)`` gives the token to put in forms (and in htmx's
  ``hx-headers``). Login and logout pages are served by :mod:`headwater.web.auth` at ``/login`` and
  ``/logout`` unless the UI router defines them.
- ``/metrics`` is mounted from ``headwater.monitoring`` when that package offers it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headwater.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from headwater.clock import Clock

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings,
    *,
    token: str | None = None,
    read_only_open: bool = False,
    secret_key: str | None = None,
    clock: Clock | None = None,
    with_ui: bool = True,
) -> FastAPI:
    """Build the app over the headwater home in ``settings``.

    ``token`` is the API token (default: ``HEADWATER_API_TOKEN`` or the one made by ``headwater db
    init``); ``read_only_open`` lets anyone read (GET) without logging in; ``secret_key`` signs the
    session cookie (default: a key kept in a 0600 file of the home).
    """
    from fastapi import FastAPI

    from headwater.web.services import WebContext

    ctx = WebContext(settings=settings) if clock is None else WebContext(settings=settings, clock=clock)
    app = FastAPI(
        title="headwater",
        summary="DAGs, runs, task logs, models and streams of one headwater home.",
        version=_version(),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.web = ctx
    app.state.read_only_open = read_only_open
    app.state.token = token
    app.state.secret_key = secret_key

    from headwater.web.api import router as api_router

    app.include_router(api_router, prefix=API_PREFIX)
    if with_ui:
        _mount_ui(app)
    return app


def _mount_ui(app: FastAPI) -> None:
    try:
        ui: Any = importlib.import_module("headwater.web.ui")
    except ModuleNotFoundError as exc:
        if exc.name not in ("headwater.web.ui",):
            raise
        return
    if getattr(ui, "router", None) is None:  # the UI package exists but is not finished
        return
    from fastapi.staticfiles import StaticFiles

    static = getattr(ui, "STATIC_DIR", None)
    if static is not None:
        app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.include_router(ui.router)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("headwater")
    except PackageNotFoundError:
        return "0"
