"""Bearer-token authentication for HTTP entry points: the customer is the token's subject.

HS256 with a shared secret for local runs; RS256 with keys from a JWKS URL for a real identity
provider. `python -m shared.auth mint --sub alice [--scope admin]` prints a local dev token.
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
from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Only for local runs: anyone can read it here, so a process using it logs a warning.
DEV_JWT_SECRET = "leadline-local-development-secret-not-for-production"
ADMIN_SCOPE = "admin"
# Subjects become customer ids in published events, so they must satisfy schemas.fields.Id:
# refusing one here is a 401, accepting it would be a 500 when the event fails validation.
_SUBJECT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore")

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: float = 30.0

    @model_validator(mode="after")
    def _rs256_needs_keys(self) -> Self:
        if self.jwt_algorithm == "RS256" and not self.jwks_url:
            raise ValueError("AUTH_JWT_ALGORITHM=RS256 needs AUTH_JWKS_URL")
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
    when the bearer token is missing or invalid, 503 when the key set cannot be fetched."""
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
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"invalid bearer token: {exc}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        except jwt.PyJWKClientConnectionError:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "token keys are unavailable, retry later"
            ) from None

    return authenticate


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
    typer.echo(mint_token(AuthSettings(), sub, scope or (), ttl))


if __name__ == "__main__":
    cli()
