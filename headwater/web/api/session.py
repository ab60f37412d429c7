"""``/session``: log a browser in with the API token (a signed cookie), see who is logged in, log out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from headwater.web import auth
from headwater.web.api.deps import Reader, Writer

router = APIRouter(tags=["session"])


class LoginRequest(BaseModel):
    """The API token, and the name to record as who does things (default ``admin``)."""

    token: str = Field(min_length=1, max_length=512)
    user: str | None = Field(None, max_length=64)


class SessionInfo(BaseModel):
    """Who is logged in, and the CSRF token their writes must carry (``X-CSRF-Token``)."""

    user: str
    via: str
    csrf_token: str


@router.post("/session", response_model=SessionInfo, summary="Log in with the API token (sets a session cookie)")
def login(request: Request, body: LoginRequest) -> SessionInfo:
    # The one write without credentials: it is how a browser gets them. A wrong token is a 401.
    who = auth.login(request, body.token, body.user)
    return SessionInfo(user=who.name, via=who.via, csrf_token=auth.csrf_token(request))


@router.get("/session", response_model=SessionInfo, summary="Who this request is")
def whoami(request: Request, who: Reader) -> SessionInfo:
    return SessionInfo(user=who.name, via=who.via, csrf_token=auth.csrf_token(request) if who.via == "session" else "")


@router.delete("/session", status_code=204, summary="Log out")
def logout(request: Request, _: Writer) -> None:
    auth.logout(request)
