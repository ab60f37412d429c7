"""Errors as JSON: ``{"error": {"code": ..., "message": ..., "hint": ...}}``.

``code`` is a stable word a client can branch on: ``not_found``, ``bad_request``, ``invalid``
(request validation), ``unauthorized``, ``forbidden``, ``conflict``, ``server_error``.
A 401 on a page a browser asks for (``Accept: text/html``, outside ``/api``) redirects to
``/login?next=...`` instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from headwater.errors import (
    DagNotFoundError,
    HeadwaterError,
    InfrastructureError,
    TaskNotFoundError,
)
from headwater.web.auth import AuthError
from headwater.web.json import EscapedJSONResponse

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("headwater.web")
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 422: "invalid", 500: "server_error"}


def error_response(status: int, message: str, hint: str | None = None, *, code: str | None = None,
                   headers: dict[str, str] | None = None, details: Any = None) -> Response:
    """The JSON error body every failure of the API returns."""
    error: dict[str, Any] = {"code": code or _CODES.get(status, "error"), "message": message, "hint": hint}
    if details is not None:
        error["details"] = details
    return EscapedJSONResponse({"error": error}, status_code=status, headers=headers)


def status_of(exc: HeadwaterError) -> int:
    """The HTTP status of a headwater error: 404 for unknown things, 503 for infrastructure, else 400."""
    if isinstance(exc, AuthError):
        return exc.status
    if isinstance(exc, DagNotFoundError | TaskNotFoundError) or type(exc).__name__.endswith("NotFoundError"):
        return 404
    if isinstance(exc, InfrastructureError):
        return 503
    return 400


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


async def _headwater_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HeadwaterError)
    status = status_of(exc)
    if status == 401 and _wants_page(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
    if status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.message, exc.hint, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    hint = "GET /docs lists the endpoints" if exc.status_code in (404, 405) else None
    return error_response(exc.status_code, message, hint, headers=dict(exc.headers or {}) or None)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems: list[str] = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()[:20]]
    return error_response(422, "invalid request: " + "; ".join(problems), "see GET /docs for the expected shape",
                          details=details)


def install_error_handlers(app: FastAPI) -> None:
    """Route headwater errors, HTTP errors and validation errors to the JSON error body."""
    app.add_exception_handler(HeadwaterError, _headwater_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
