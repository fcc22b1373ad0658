"""Bearer-token authentication (shared.auth) with HS256 tokens."""

from __future__ import annotations

from typing import Annotated

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI

from shared.auth import (
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


def test_rs256_needs_a_key_set_url() -> None:
    with pytest.raises(ValueError, match="AUTH_JWKS_URL"):
        AuthSettings(jwt_algorithm="RS256")
