"""Bearer-token authentication for HTTP entry points: the customer is the token's subject.

HS256 with a shared secret of at least 32 bytes, or RS256 with keys from a JWKS URL for a real
identity provider (issuer and audience then required). The public development secret below is
refused unless `LEADLINE_ENV=local`, so a forgotten `AUTH_JWT_SECRET` stops a deployment from
starting instead of letting anyone mint admin tokens.
`python -m shared.auth mint --sub alice [--scope admin]` prints a local dev token.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the dependency's
# annotations, which name a local (`bearer`), at definition time.

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

import jwt
import typer
from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.http.health import HealthChecks
from shared.observability.logging import get_logger

log = get_logger(__name__)

# Only for local runs: anyone can read it here, so it is refused unless LEADLINE_ENV=local.
DEV_JWT_SECRET = "leadline-local-development-secret-not-for-production"
LOCAL = "local"
# RFC 7518 §3.2: an HS256 key at least as long as the hash output (256 bits).
MIN_SECRET_BYTES = 32
ADMIN_SCOPE = "admin"
INVALID_TOKEN = "invalid bearer token"
DEV_SECRET_NOTE = (
    "the public local development JWT secret is in use (LEADLINE_ENV=local): anyone can mint"
    " tokens; set AUTH_JWT_SECRET"
)
# Subjects become customer ids in published events, so they must satisfy schemas.fields.Id:
# refusing one here is a 401, accepting it would be a 500 when the event fails validation.
_SUBJECT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTH_",
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        # a refused secret must not be echoed into the start-up error (and so into logs)
        hide_input_in_errors=True,
    )

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: float = 30.0
    environment: str = Field(
        default="production",
        validation_alias=AliasChoices("LEADLINE_ENV"),
        description="env LEADLINE_ENV (never prefixed); only `local` allows the dev secret",
    )

    @model_validator(mode="after")
    def _refuse_weak_keys(self) -> Self:
        if self.jwt_algorithm == "RS256":
            missing = [
                f"AUTH_{name.upper()}"
                for name in ("jwks_url", "issuer", "audience")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"AUTH_JWT_ALGORITHM=RS256 needs {', '.join(missing)}")
        elif self.uses_dev_secret and self.environment != LOCAL:
            raise ValueError(
                "AUTH_JWT_SECRET is unset (or the public development secret): set it to a"
                f" secret of at least {MIN_SECRET_BYTES} bytes, or LEADLINE_ENV=local for a"
                " local run"
            )
        elif len(self.jwt_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"AUTH_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        return self

    @property
    def uses_dev_secret(self) -> bool:
        return self.jwt_algorithm == "HS256" and (
            self.jwt_secret.get_secret_value() == DEV_JWT_SECRET
        )


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes


class InvalidTokenError(Exception):
    """The token is malformed, expired, badly signed or names no usable subject."""


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    # OAuth 2 puts a space-separated string in "scope"; some providers a list in "scp".
    scope, scp = claims.get("scope", ""), claims.get("scp", [])
    words = scope.split() if isinstance(scope, str) else []
    listed = [s for s in scp if isinstance(s, str)] if isinstance(scp, list) else []
    return frozenset(words + listed)


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None

    async def _key(self, token: str) -> Any:
        if self._jwks is None:
            return self._settings.jwt_secret.get_secret_value()
        # PyJWKClient fetches synchronously (then caches): keep it off the event loop.
        signing = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        return signing.key

    async def verify(self, token: str) -> Principal:
        """The principal a valid token names; InvalidTokenError otherwise."""
        s = self._settings
        try:
            claims = jwt.decode(
                token,
                await self._key(token),
                algorithms=[s.jwt_algorithm],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "sub"], "verify_aud": s.audience is not None},
            )
        except jwt.PyJWKClientConnectionError:
            raise
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidTokenError(str(exc) or type(exc).__name__) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not _SUBJECT.match(subject):
            raise InvalidTokenError("subject is not a valid customer id")
        return Principal(subject, _scopes(claims))


def mint_token(
    settings: AuthSettings, subject: str, scopes: Sequence[str] = (), ttl: int = 3600
) -> str:
    """An HS256 token signed with the configured secret (local development and tests)."""
    if settings.jwt_algorithm != "HS256":
        raise ValueError("tokens can only be minted locally with HS256")
    if not _SUBJECT.match(subject):
        raise ValueError(f"subject {subject!r} is not a valid customer id")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + ttl}
    if scopes:
        claims["scope"] = " ".join(scopes)
    if settings.issuer:
        claims["iss"] = settings.issuer
    if settings.audience:
        claims["aud"] = settings.audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def make_bearer_dependency(settings: AuthSettings) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency returning the request's Principal; 401 with `WWW-Authenticate`
    when the bearer token is missing or invalid, 503 when the key set cannot be fetched. The
    401 says only that the token is invalid: why is logged, never told to the caller."""
    verifier = TokenVerifier(settings)
    bearer = HTTPBearer(auto_error=False, description="JWT; the subject is the customer id")

    async def authenticate(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return await verifier.verify(credentials.credentials)
        except InvalidTokenError as exc:
            log.info("bearer token refused", reason=str(exc))
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                INVALID_TOKEN,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        except jwt.PyJWKClientConnectionError:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "token keys are unavailable, retry later"
            ) from None

    return authenticate


def add_auth_check(settings: AuthSettings, ready: HealthChecks) -> None:
    """Readiness names the public development secret while it is in use (only possible with
    LEADLINE_ENV=local): it passes, so a local system still turns ready, but an operator who
    looks sees that anyone can mint tokens for this process."""
    if settings.uses_dev_secret:
        log.warning("bearer tokens use the public development secret (LEADLINE_ENV=local)")
        ready.add("auth", lambda: None, note=DEV_SECRET_NOTE)


cli = typer.Typer(add_completion=False, help="Authentication helpers for Leadline.")


@cli.callback()
def _main() -> None:
    """Authentication helpers for Leadline."""


@cli.command()
def mint(
    sub: Annotated[str, typer.Option(help="subject: the customer id")],
    scope: Annotated[list[str] | None, typer.Option(help="a scope, e.g. admin; repeatable")] = None,
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 3600,
) -> None:
    """Print a development token signed with AUTH_JWT_SECRET (or the local dev secret)."""
    # Minting grants nothing by itself: a token signed with the dev secret only opens a
    # service that runs with LEADLINE_ENV=local, so the CLI needs no LEADLINE_ENV of its own.
    typer.echo(mint_token(AuthSettings(environment=LOCAL), sub, scope or (), ttl))


if __name__ == "__main__":
    cli()
