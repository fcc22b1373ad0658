"""Bearer-token authentication (shared.auth) with HS256 tokens."""

from __future__ import annotations

from typing import Annotated

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from pydantic import ValidationError
from structlog.testing import capture_logs

from shared.auth import (
    DEV_JWT_SECRET,
    AuthSettings,
    InvalidTokenError,
    Principal,
    TokenVerifier,
    make_bearer_dependency,
    mint_token,
)

SETTINGS = AuthSettings(jwt_secret="a-test-secret-that-is-long-enough-for-hs256")
# module level: FastAPI resolves the string annotations below against module globals
Authenticated = Annotated[Principal, Depends(make_bearer_dependency(SETTINGS))]


async def test_a_minted_token_names_its_subject_and_scopes() -> None:
    token = mint_token(SETTINGS, "alice", ["admin", "orders"])
    principal = await TokenVerifier(SETTINGS).verify(token)
    assert principal == Principal("alice", frozenset({"admin", "orders"}))
    assert principal.is_admin


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"sub": "alice", "exp": 1}, "expired"),
        ({"sub": "alice"}, "exp"),
        ({"sub": "not a customer id!", "exp": 2**40}, "subject"),
    ],
)
async def test_bad_tokens_are_refused(claims: dict[str, object], why: str) -> None:
    token = jwt.encode(claims, SETTINGS.jwt_secret.get_secret_value(), algorithm="HS256")
    with pytest.raises(InvalidTokenError, match=why):
        await TokenVerifier(SETTINGS).verify(token)


async def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = AuthSettings(jwt_secret="another-secret-that-is-also-long-enough-x")
    with pytest.raises(InvalidTokenError, match="Signature"):
        await TokenVerifier(SETTINGS).verify(mint_token(other, "alice"))


async def test_issuer_and_audience_are_checked_when_configured() -> None:
    strict = AuthSettings(
        jwt_secret=SETTINGS.jwt_secret, issuer="https://id.example", audience="leadline"
    )
    assert (await TokenVerifier(strict).verify(mint_token(strict, "alice"))).subject == "alice"
    with pytest.raises(InvalidTokenError):
        await TokenVerifier(strict).verify(mint_token(SETTINGS, "alice"))


async def test_the_dependency_answers_401_with_a_bearer_challenge() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(principal: Authenticated) -> dict[str, str]:
        return {"sub": principal.subject}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        missing = await client.get("/me")
        wrong = await client.get("/me", headers={"Authorization": "Bearer nonsense"})
        good = await client.get(
            "/me", headers={"Authorization": f"Bearer {mint_token(SETTINGS, 'bob')}"}
        )
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert good.json() == {"sub": "bob"}


async def test_a_refused_token_is_not_told_why_but_the_reason_is_logged() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(principal: Authenticated) -> dict[str, str]:
        return {"sub": principal.subject}

    expired = jwt.encode({"sub": "alice", "exp": 1}, SETTINGS.jwt_secret.get_secret_value())
    forged = mint_token(AuthSettings(jwt_secret="a-guessed-secret-long-enough-for-hs256"), "eve")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with capture_logs() as logs:
            answers = [
                await client.get("/me", headers={"Authorization": f"Bearer {token}"})
                for token in (expired, forged)
            ]
    assert [(a.status_code, a.json()) for a in answers] == [
        (401, {"detail": "invalid bearer token"})
    ] * 2
    reasons = [entry["reason"] for entry in logs if entry["event"] == "bearer token refused"]
    assert reasons == ["Signature has expired", "Signature verification failed"]


def test_the_dev_secret_is_refused_unless_the_environment_is_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    monkeypatch.delenv("LEADLINE_ENV", raising=False)
    with pytest.raises(ValidationError, match=r"set it .* or LEADLINE_ENV=local"):
        AuthSettings()  # unset: production-like by default
    for environment in ("production", "staging", "Local"):
        with pytest.raises(ValidationError, match="AUTH_JWT_SECRET"):
            AuthSettings(jwt_secret=DEV_JWT_SECRET, environment=environment)
    monkeypatch.setenv("LEADLINE_ENV", "local")
    assert AuthSettings().uses_dev_secret
    monkeypatch.setenv("AUTH_JWT_SECRET", "a-deployment-secret-of-at-least-32-bytes")
    monkeypatch.setenv("LEADLINE_ENV", "production")
    assert not AuthSettings().uses_dev_secret


@pytest.mark.parametrize("environment", ["local", "production"])
def test_an_hs256_secret_needs_32_bytes_and_is_not_echoed(environment: str) -> None:
    short = "only-31-bytes-long-secret-value"
    assert len(short) == 31
    with pytest.raises(ValidationError, match="at least 32 bytes") as refused:
        AuthSettings(jwt_secret=short, environment=environment)
    assert short not in str(refused.value)
    assert AuthSettings(jwt_secret=short + "!", environment=environment).jwt_secret


def test_rs256_needs_a_key_set_an_issuer_and_an_audience() -> None:
    with pytest.raises(ValueError, match="AUTH_JWKS_URL, AUTH_ISSUER, AUTH_AUDIENCE"):
        AuthSettings(jwt_algorithm="RS256")
    with pytest.raises(ValueError, match="needs AUTH_AUDIENCE "):
        AuthSettings(jwt_algorithm="RS256", jwks_url="https://id.example/jwks", issuer="x")
    rs256 = AuthSettings(
        jwt_algorithm="RS256", jwks_url="https://id.example/jwks", issuer="x", audience="y"
    )
    assert not rs256.uses_dev_secret  # the HS256 secret plays no part
