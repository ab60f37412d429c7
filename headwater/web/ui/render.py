"""Rendering pages: the Jinja environment (autoescape on), filters, and what every page gets.

Every page gets ``request``, ``csrf`` (the token for forms and htmx headers), ``user`` (who is
logged in, or None), ``flashes`` (messages from the previous POST) and ``section`` (nav tab).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from headwater.web.ui.layout import duration_text

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _q(value: object) -> str:
    """Quote a path segment or query value whole (a ``/`` in an id must not split the path)."""
    return quote(str(value), safe="")


@cache
def environment() -> Environment:
    """The one Jinja environment of the UI (built on first use, not at import)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,  # every page shows names users chose (DAG ids, params, log lines): escape all
        undefined=StrictUndefined,  # a typo in a template fails the page test instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = _q
    env.filters["duration"] = duration_text
    env.globals["static"] = _static_url
    return env


@cache
def _static_url(name: str) -> str:
    # The file's mtime busts browser caches after an upgrade without a build step.
    try:
        stamp = int((STATIC_DIR / name).stat().st_mtime)
    except OSError:
        stamp = 0
    return f"/static/{name}?v={stamp}"


def current_user(request: Request) -> str | None:
    """Who is logged in through the session, or None."""
    session = request.scope.get("session")
    if not isinstance(session, dict):
        return None
    user = session.get("user")
    return str(user) if user else None


def csrf_for(request: Request) -> str:
    """The CSRF token to put in this page's forms (from :mod:`headwater.web.auth`)."""
    from headwater.web.auth import csrf_token

    return csrf_token(request)


def flash(request: Request, kind: str, text: str, hint: str | None = None) -> None:
    """Keep a message for the next page this browser opens (``kind``: info or error)."""
    session = request.scope.get("session")
    if isinstance(session, dict):
        session.setdefault("flashes", []).append([kind, text, hint])


def _take_flashes(request: Request) -> list[list[str | None]]:
    session = request.scope.get("session")
    if not isinstance(session, dict):
        return []
    return list(session.pop("flashes", []))


def page(request: Request, template: str, *, section: str = "", status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a full page."""
    from headwater.web.app import _version

    values = {
        "request": request,
        "csrf": csrf_for(request),
        "user": current_user(request),
        "flashes": _take_flashes(request),
        "section": section,
        "version": _version(),
        **context,
    }
    html = environment().get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code)


def fragment(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a live part of a page (htmx swaps it in); no flashes are consumed."""
    values = {"request": request, "csrf": csrf_for(request), **context}
    return HTMLResponse(environment().get_template(template).render(values), status_code=status_code)


def back(url: str) -> RedirectResponse:
    """After a POST: see the result with a GET (303), so a reload does not post again."""
    return RedirectResponse(url, status_code=303)


def safe_next(value: str | None, default: str) -> str:
    """A redirect target from a form, only if it stays on this site (no ``//host`` or scheme)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default
