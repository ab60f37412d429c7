"""FastAPI dependencies shared by the API routers and the UI pages.

``Ctx`` is the annotated type to take the app's :class:`WebContext`:
``def page(ctx: Ctx) -> ...``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from headwater.web.services import WebContext


def web_context(request: Request) -> WebContext:
    """The app's :class:`WebContext` (settings + store), set by :func:`headwater.web.app.create_app`."""
    ctx: WebContext = request.app.state.web
    return ctx


Ctx = Annotated[WebContext, Depends(web_context)]
