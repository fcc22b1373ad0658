"""`GET /receipts/{order_id}` on real PostgreSQL: the owner reads it, others cannot see it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.receipts import api
from services.receipts.bootstrap import create_app
from services.receipts.domain import Line, Order, issue
from services.receipts.settings import ReceiptsSettings
from services.receipts.store import SCHEMA, PostgresReceiptsUnitOfWork
from shared.auth import DEV_SECRET_NOTE, AuthSettings, make_bearer_dependency, mint_token
from shared.postgres import install_schema
from tests.support import eventually, unique

pytestmark = pytest.mark.integration
AUTH = AuthSettings(jwt_secret="receipts-api-test-secret-long-enough-for-hs256")


@pytest.fixture
async def client(pg_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    await install_schema(pg_pool, SCHEMA)
    order = Order("ord-1", "alice", "EUR", (Line("TEA-001", 3, 450, 1350),))
    receipt = issue(order, "LL-00000007", Decimal("0.20"), datetime(2026, 1, 1, tzinfo=UTC))
    async with PostgresReceiptsUnitOfWork(pg_pool) as uow:
        await uow.receipts.add_order(order)
        await uow.receipts.add_receipt(receipt, "LL", 7)
    app = FastAPI()
    app.include_router(api.router(make_bearer_dependency(AUTH)))
    app.state.pool = pg_pool
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receipts") as c:
        yield c


def _as(subject: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(AUTH, subject, scopes)}"}


async def test_the_owner_reads_the_receipt(client: httpx.AsyncClient) -> None:
    response = await client.get("/receipts/ord-1", headers=_as("alice"))
    assert response.status_code == 200
    body = response.json()
    assert body["number"] == "LL-00000007"
    assert (body["subtotal_cents"], body["tax_cents"], body["total_cents"]) == (1350, 270, 1620)
    assert body["tax_rate"] == "0.2000"
    assert body["lines"] == [
        {"sku": "TEA-001", "quantity": 3, "unit_price_cents": 450, "line_total_cents": 1350}
    ]
    assert body["delivery"] == "pending"


async def test_another_customer_gets_404_like_an_unknown_order(client: httpx.AsyncClient) -> None:
    other = await client.get("/receipts/ord-1", headers=_as("mallory"))
    unknown = await client.get("/receipts/ord-404", headers=_as("alice"))
    assert other.status_code == unknown.status_code == 404


async def test_an_admin_reads_any_receipt(client: httpx.AsyncClient) -> None:
    response = await client.get("/receipts/ord-1", headers=_as("support", "admin"))
    assert response.status_code == 200


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/receipts/ord-1")).status_code == 401


async def test_a_malformed_order_id_is_a_422_not_a_database_error(
    client: httpx.AsyncClient,
) -> None:
    # NUL cannot be sent to PostgreSQL as text: unchecked, it was a 500
    response = await client.get("/receipts/ord%001", headers=_as("alice"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "order_id"]


def requests_answered(method: str, route: str, status: int) -> float:
    labels = {"service": "receipts", "method": method, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("leadline_http_requests_total", labels) or 0.0


async def test_the_service_app_limits_bodies_counts_requests_and_names_the_dev_secret(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str, tmp_path: Path
) -> None:
    settings = ReceiptsSettings(
        database_url=pg_dsn,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=catalogue_prefix,
        consumer_group=unique("receipts"),
        mailbox_dir=tmp_path / "mailbox",
    )
    local = AuthSettings(environment="local")
    before = (
        requests_answered("GET", "/receipts/{order_id}", 404),
        requests_answered("POST", "unmatched", 413),
    )
    app = create_app(settings, local)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receipts") as client:
            token = {"Authorization": f"Bearer {mint_token(local, 'alice')}"}
            unknown = await client.get("/receipts/ord-404", headers=token)
            too_big = await client.post(
                "/receipts/ord-404", content=b"x" * (settings.max_body_bytes + 1)
            )
            ready = await eventually(
                lambda: client.get("/health/ready"), lambda r: r.status_code == 200, what="ready"
            )
    assert unknown.status_code == 404
    assert too_big.status_code == 413
    after = (
        requests_answered("GET", "/receipts/{order_id}", 404),
        requests_answered("POST", "unmatched", 413),
    )
    assert [b + 1 for b in before] == list(after)
    # local only, and it says so: readiness passes but names the public secret
    assert ready.json()["checks"]["auth"] == {"ok": True, "note": DEV_SECRET_NOTE}
