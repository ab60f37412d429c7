"""Errors on pages as pages: a missing DAG or a bad query shows the message and its hint in the layout.

The app's handlers answer JSON (the API's error body); a browser opening a page should see the
product instead, so page views are wrapped with :func:`html_errors`. Auth errors are left to the
app (a 401 on a page redirects to the login page).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse

from headwater.errors import HeadwaterError
from headwater.web.auth import AuthError

F = TypeVar("F", bound=Callable[..., Any])


def html_errors(view: F) -> F:
    """Render a headwater error raised by ``view`` (which takes ``request``) as an error page."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except AuthError:
            raise
        except HeadwaterError as exc:
            request = kwargs.get("request")
            if not isinstance(request, Request):
                raise
            return error_page(request, exc)

    return wrapper  # type: ignore[return-value]


def error_page(request: Request, exc: HeadwaterError) -> HTMLResponse:
    """The error page of ``exc`` with the status the API would use."""
    from headwater.web.errors import status_of
    from headwater.web.ui.render import page

    return page(request, "ui/error.html", status_code=status_of(exc), message=exc.message, hint=exc.hint)
