"""Log in (the API token, once per browser) and log out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from headwater.web import auth
from headwater.web.ui.render import back, page, safe_next

router = APIRouter()


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, next: str = "/dags") -> HTMLResponse:
    return page(request, "ui/login.html", next=safe_next(next, "/dags"), error=None, name="")


@router.post("/login", include_in_schema=False)
def login(request: Request, token: Annotated[str, Form()] = "", name: Annotated[str, Form()] = "",
          next: Annotated[str, Form()] = "/dags") -> Response:
    # No CSRF token here: there is no session to protect yet, and the token itself is the secret.
    target = safe_next(next, "/dags")
    try:
        auth.login(request, token, name)
    except auth.AuthError as exc:
        return page(request, "ui/login.html", next=target, error=exc, name=name, status_code=exc.status)
    return back(target)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    # Logging out needs the CSRF token too, or another site could log a user out.
    await auth.require_write(request)
    auth.logout(request)
    return back("/login")
