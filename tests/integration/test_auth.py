"""RS256 tokens verified with keys fetched from a real JWKS endpoint (served on loopback)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.auth import AuthSettings, InvalidTokenError, Principal, TokenVerifier

pytestmark = pytest.mark.integration
ISSUER, AUDIENCE = "https://id.example", "leadline"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    jwk = json.loads(RSAAlgorithm.to_jwk(signing_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "key-1", "alg": "RS256", "use": "sig"}]}).encode()

    class JWKS(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        thread.join()


def rs256(key: rsa.RSAPrivateKey, kid: str, **claims: Any) -> str:
    claims = {"sub": "alice", "exp": 2**40, "iss": ISSUER, "aud": AUDIENCE, **claims}
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None},
        key,
        algorithm="RS256",
        headers={"kid": kid},
    )


def rs256_verifier(jwks_url: str) -> TokenVerifier:
    return TokenVerifier(
        AuthSettings(jwt_algorithm="RS256", jwks_url=jwks_url, issuer=ISSUER, audience=AUDIENCE)
    )


async def test_rs256_tokens_are_verified_with_the_key_set(
    jwks_url: str, signing_key: rsa.RSAPrivateKey
) -> None:
    token = rs256(signing_key, "key-1", scope="admin")
    assert await rs256_verifier(jwks_url).verify(token) == Principal("alice", frozenset({"admin"}))


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://elsewhere.example"},
        {"iss": None},
        {"aud": "another-api"},
        {"aud": None},
    ],
)
async def test_a_token_for_another_issuer_or_audience_is_refused(
    jwks_url: str, signing_key: rsa.RSAPrivateKey, claims: dict[str, Any]
) -> None:
    with pytest.raises(InvalidTokenError):
        await rs256_verifier(jwks_url).verify(rs256(signing_key, "key-1", **claims))


async def test_a_token_from_another_key_is_refused(jwks_url: str) -> None:
    verifier = rs256_verifier(jwks_url)
    with pytest.raises(InvalidTokenError):
        await verifier.verify(rs256(new_key(), "key-1"))
    with pytest.raises(InvalidTokenError, match="signing key"):
        await verifier.verify(rs256(new_key(), "unknown-key"))


async def test_an_hs256_token_is_refused_when_rs256_is_configured(jwks_url: str) -> None:
    verifier = rs256_verifier(jwks_url)
    forged = jwt.encode(
        {"sub": "alice", "exp": 2**40}, "guessed-secret-long-enough-for-hs256-x", "HS256"
    )
    with pytest.raises(InvalidTokenError):
        await verifier.verify(forged)
