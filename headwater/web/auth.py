"""Who may read and write: the API token, the UI's session login, CSRF protection.

**The token.** One shared secret guards every write. It comes from ``HEADWATER_API_TOKEN`` (read by
``headwater web``, passed to :func:`headwater.web.app.create_app` as ``token=``) or, when that is
unset, from ``headwater db init``, which makes a random token, prints it once, and keeps only its
SHA-256 in ``$HEADWATER_HOME/api_token.sha256`` (mode 0600). A hash in a file, not a table: no
schema migration, and reading the file does not give the token away. Lost it? Delete the file and
run ``headwater db init`` again.

**Requests.** API clients send ``Authorization: Bearer <token>``. Browsers log in once
(:func:`login`: the token in a form) and get a signed session cookie (Starlette's
``SessionMiddleware``, signed with ``itsdangerous``; key in ``$HEADWATER_HOME/web_secret``, 0600).
A session's writes must carry its CSRF token (:func:`csrf_token`) in the form field ``csrf_token``
or the header ``X-CSRF-Token``: a page of another site can make the browser send the cookie, but
cannot read the token. Bearer requests need no CSRF token (browsers never add that header).

**Dependencies.** ``Depends(require_read)`` on every read (open to all only when the app is made with
``read_only_open=True``), ``Depends(require_write)`` on every write; both return the
:class:`Principal`. ``AuthError`` becomes a 401/403 JSON error (the app's handler), or, for a
browser asking for a page, a redirect to ``/login``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from headwater.errors import HeadwaterError

if TYPE_CHECKING:
    from headwater.settings import Settings

TOKEN_FILE = "api_token.sha256"  # noqa: S105 - a file name, not a secret
SECRET_FILE = "web_secret"  # noqa: S105 - a file name, not a secret
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "headwater_session"
SESSION_MAX_AGE = 12 * 3600
_LOGIN_HINT = ("send the API token as 'Authorization: Bearer <token>' (HEADWATER_API_TOKEN, or the one "
               "`headwater db init` printed), or log in at /login")


class AuthError(HeadwaterError):
    """The request lacks valid credentials (401) or its CSRF token (403)."""

    def __init__(self, message: str, *, status: int = 401, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``via`` is ``token``, ``session`` or ``open`` (read_only_open, not logged in)."""

    name: str
    via: str


# -- the token ----------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """The SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_file(settings: Settings) -> Path:
    return settings.home / TOKEN_FILE


def stored_token_hash(settings: Settings) -> str | None:
    """The hash ``headwater db init`` kept, or None."""
    try:
        text = token_file(settings).read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text or None


def make_token(settings: Settings) -> str | None:
    """Make the API token of this home if it has none: returns it (to print once), or None when one exists."""
    settings.home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    if not _write_private(token_file(settings), token_hash(token) + "\n"):
        return None
    return token


def check_token(candidate: str, expected_hash: str | None) -> bool:
    """True when ``candidate`` is the token (compared in constant time)."""
    if not expected_hash or not candidate:
        return False
    return hmac.compare_digest(token_hash(candidate), expected_hash)


def secret_key(settings: Settings) -> str:
    """The key that signs session cookies: kept in a 0600 file of the home, made on first use."""
    path = settings.home / SECRET_FILE
    settings.home.mkdir(parents=True, exist_ok=True)
    _write_private(path, secrets.token_urlsafe(48) + "\n")
    return path.read_text(encoding="ascii").strip()


def _write_private(path: Path, text: str) -> bool:
    """Create ``path`` with mode 0600 holding ``text``; False when it exists already (never overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    return True


# -- sessions and CSRF --------------------------------------------------------------------


def _session(request: Request) -> dict[str, object] | None:
    session = request.scope.get("session")
    return session if isinstance(session, dict) else None


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser session (made on first use): put it in every form as
    ``<input type="hidden" name="csrf_token" value="...">`` or in htmx's ``hx-headers``."""
    session = _session(request)
    if session is None:
        return ""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def login(request: Request, token: str, user: str | None = None) -> Principal:
    """Log this browser in when ``token`` is the API token; AuthError otherwise.

    The session starts afresh (no fixation) with a new CSRF token; ``user`` (default ``admin``)
    is the name recorded as who approved or triggered things.
    """
    if not check_token(token, request.app.state.token_hash):
        raise AuthError("wrong token", hint=_no_token_hint(request) or "use the API token of this headwater home")
    session = _session(request)
    if session is None:
        raise AuthError("sessions are not enabled on this app", status=500)
    name = (user or "").strip()[:64] or "admin"
    session.clear()
    session["user"] = name
    csrf_token(request)
    return Principal(name, "session")


def logout(request: Request) -> None:
    """Forget this browser's session."""
    session = _session(request)
    if session is not None:
        session.clear()


# -- dependencies -------------------------------------------------------------------------


def authenticate(request: Request) -> Principal | None:
    """The principal of a valid bearer token or session; None when the request carries neither.

    A bearer token that is wrong is an AuthError (401), never a fall-back to the session.
    """
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError("the Authorization header is not 'Bearer <token>'", hint=_LOGIN_HINT)
        if not check_token(value.strip(), request.app.state.token_hash):
            raise AuthError("wrong API token", hint=_no_token_hint(request) or _LOGIN_HINT)
        return Principal("api", "token")
    session = _session(request)
    user = session.get("user") if session else None
    if isinstance(user, str) and user:
        return Principal(user, "session")
    return None


def require_read(request: Request) -> Principal:
    """Dependency of every read: a valid token or session, or anyone when reads are open."""
    principal = authenticate(request)
    if principal is not None:
        return principal
    if request.app.state.read_only_open:
        return Principal("anonymous", "open")
    raise AuthError("log in to see this", hint=_LOGIN_HINT)


async def require_write(request: Request) -> Principal:
    """Dependency of every write: a valid bearer token, or a session whose CSRF token comes with the request."""
    principal = authenticate(request)
    if principal is None:
        raise AuthError("this needs the API token", hint=_no_token_hint(request) or _LOGIN_HINT)
    if principal.via == "session":
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette caches it: the endpoint's Form() fields still work
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        expected = _session(request) or {}
        if not sent or not hmac.compare_digest(sent, str(expected.get(CSRF_FIELD) or "")):
            raise AuthError("the form's CSRF token is missing or stale", status=403,
                            hint="reload the page and try again")
    return principal


def _no_token_hint(request: Request) -> str | None:
    if request.app.state.token_hash:
        return None
    return "this server has no API token: set HEADWATER_API_TOKEN, or run `headwater db init` to make one"
