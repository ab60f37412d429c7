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
  ``hx-headers``); ``login(request, token, user)`` / ``logout(request)`` for the login page, which the
  UI serves at ``/login`` (a 401 on a page a browser asks for redirects there with ``?next=``).
- ``/metrics`` is mounted from ``headwater.monitoring`` when that package offers it.

Errors: every headwater error, 404 and 422 comes back as
``{"error": {"code": ..., "message": ..., "hint": ...}}`` under ``/api``.
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
    with_metrics: bool = True,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """Build the app over the headwater home in ``settings``.

    ``token`` is the API token (``headwater web`` passes ``HEADWATER_API_TOKEN``); without it the
    hash kept by ``headwater db init`` is used, and without that no write is possible.
    ``read_only_open`` lets anyone read without logging in; ``secret_key`` signs the session cookie
    (default: a key kept in a 0600 file of the home). ``allowed_hosts`` refuses requests whose
    ``Host`` header names another host (``headwater web`` on 127.0.0.1 allows only loopback names, so
    a web page that rebinds its DNS name to 127.0.0.1 cannot talk to the server). Building the app
    reads no DAG file.
    """
    from fastapi import FastAPI
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.middleware.sessions import SessionMiddleware

    from headwater.web import auth
    from headwater.web.errors import install_error_handlers
    from headwater.web.json import EscapedJSONResponse
    from headwater.web.services import WebContext

    ctx = WebContext(settings=settings) if clock is None else WebContext(settings=settings, clock=clock)
    app = FastAPI(
        title="headwater",
        summary="DAGs, runs, task logs, models and streams of one headwater home.",
        description="Reads need the API token or a session unless the server opens them; every write needs "
                    "`Authorization: Bearer <token>` (or a session and its CSRF token).",
        version=_version(),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        default_response_class=EscapedJSONResponse,
    )
    app.state.web = ctx
    app.state.read_only_open = read_only_open
    app.state.token_hash = auth.token_hash(token) if token else auth.stored_token_hash(settings)
    app.add_middleware(
        SessionMiddleware, secret_key=secret_key or auth.secret_key(settings), session_cookie=auth.SESSION_COOKIE,
        max_age=auth.SESSION_MAX_AGE, same_site="lax", https_only=False,
    )
    # Pages are mostly repeated markup (a grid of 25 runs x 100 tasks is ~170 KiB, 4.5 KiB
    # gzipped); the live fragments polled every 2 s shrink the same way. Log tails are polled,
    # not streamed, so nothing waits on a compressor's buffer.
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    if allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    install_error_handlers(app)

    from headwater.web.api import router as api_router

    app.include_router(api_router, prefix=API_PREFIX)
    if with_metrics:
        _mount_metrics(app)
    if with_ui:
        _mount_ui(app)
    return app


def _mount_ui(app: FastAPI) -> None:
    try:
        ui: Any = importlib.import_module("headwater.web.ui")
    except ModuleNotFoundError as exc:
        if exc.name != "headwater.web.ui":
            raise
        return
    if getattr(ui, "router", None) is None:  # the UI package exists but is not finished
        return
    from fastapi.staticfiles import StaticFiles

    static = getattr(ui, "STATIC_DIR", None)
    if static is not None:
        app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.include_router(ui.router)


def _mount_metrics(app: FastAPI) -> None:
    """``/metrics`` from ``headwater.monitoring`` (``mount_metrics(app)``) when it is there."""
    try:
        monitoring: Any = importlib.import_module("headwater.monitoring")
    except ModuleNotFoundError as exc:
        if exc.name != "headwater.monitoring":
            raise
        return
    mount = getattr(monitoring, "mount_metrics", None)
    if mount is not None:
        mount(app)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("headwater")
    except PackageNotFoundError:
        return "0"
