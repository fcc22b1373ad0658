"""Who may use the console: the bearer of a token with the admin scope, verified exactly as the
services' admin endpoints verify it (`shared.auth`, the same `AUTH_*` settings).

A browser cannot send a bearer header by itself, so the sign-in form takes the token once and
keeps it in a cookie no script can read (HttpOnly) and no other site's page can make the
browser send (SameSite=Strict). The token is verified again on every request, so the session
ends when the token expires; the console keeps no session state. A script may send
`Authorization: Bearer` instead of signing in.

Every POST that changes something must carry the session's CSRF token: an HMAC of its bearer
token under a key this process drew when it started. It cannot be made without the bearer
token, and forms from before a restart are refused (the operator loads the page again).
SameSite=Strict already keeps other sites' forms from carrying the cookie: this is the second
lock, and the one that holds in a browser that ignores SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
from fastapi import Request

from shared.auth import InvalidTokenError, Principal, TokenVerifier

log = logging.getLogger(__name__)

COOKIE = "leadline_console"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    principal: Principal
    token: str
    csrf: str


class SignInRequired(Exception):
    """No usable credentials: the answer is the sign-in form, with this message and status."""

    def __init__(self, message: str = "", status: int = 401) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class Refused(Exception):
    """A POST that fails the CSRF or origin check: nothing was done."""


class Gate:
    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier
        self._key = secrets.token_bytes(32)

    async def admit(self, token: str) -> Session:
        """The session of an admin's token; SignInRequired saying why not (the reason a token
        is invalid is logged, never shown)."""
        try:
            principal = await self._verifier.verify(token)
        except InvalidTokenError as exc:
            log.info("console token refused: %s", exc)
            raise SignInRequired(
                "That token was refused: it is not valid, or it has expired."
            ) from None
        except jwt.PyJWKClientConnectionError:
            raise SignInRequired("The token keys cannot be fetched now; try again.", 503) from None
        if not principal.is_admin:
            raise SignInRequired(
                f"The token of {principal.subject} lacks the admin scope the console needs.", 403
            )
        csrf = hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()
        return Session(principal, token, csrf)

    async def session(self, request: Request) -> Session:
        """From `Authorization: Bearer`, else from the cookie the sign-in form set."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise SignInRequired("The Authorization header is not a bearer token.")
            return await self.admit(token.strip())
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            raise SignInRequired()
        return await self.admit(cookie)


def check_post(request: Request, session: Session, form: dict[str, str]) -> None:
    """Refused unless the form carries the session's CSRF token and, when the browser names the
    page's origin, it is this console's own."""
    offered = form.get(CSRF_FIELD, "")
    if not hmac.compare_digest(offered.encode(), session.csrf.encode()):
        raise Refused("the form carries no valid CSRF token: load the page again and resubmit")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(f"the form was sent from another origin ({origin})")


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path on this console, never another site."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path
