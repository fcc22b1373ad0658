"""`GET /stock` and `GET /stock/{sku}` on real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.inventory import api
from services.inventory.bootstrap import create_app
from services.inventory.settings import InventorySettings
from services.inventory.store import SCHEMA
from shared.postgres import install_schema
from tests.support import unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(pg_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    await install_schema(pg_pool, SCHEMA)
    await pg_pool.execute(
        "INSERT INTO stock (sku, on_hand, reserved) VALUES ('TEA-001', 10, 4), ('MUG-001', 3, 0)"
    )
    app = FastAPI()
    app.include_router(api.router)
    app.state.pool = pg_pool
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as c:
        yield c


async def test_one_sku_shows_on_hand_reserved_and_available(client: httpx.AsyncClient) -> None:
    response = await client.get("/stock/TEA-001")
    assert response.status_code == 200
    assert response.json() == {"sku": "TEA-001", "on_hand": 10, "reserved": 4, "available": 6}


async def test_every_sku_in_sku_order(client: httpx.AsyncClient) -> None:
    response = await client.get("/stock")
    assert [level["sku"] for level in response.json()] == ["MUG-001", "TEA-001"]


async def test_an_unknown_sku_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/stock/NOPE-001")).status_code == 404


async def test_a_malformed_sku_is_a_422_not_a_database_error(client: httpx.AsyncClient) -> None:
    # NUL cannot be sent to PostgreSQL as text: unchecked, it was a 500
    response = await client.get("/stock/TEA%00-001")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "sku"]


def requests_answered(method: str, route: str, status: int) -> float:
    labels = {"service": "inventory", "method": method, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("leadline_http_requests_total", labels) or 0.0


async def test_the_service_app_limits_bodies_and_counts_requests(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    settings = InventorySettings(
        database_url=pg_dsn,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=catalogue_prefix,
        consumer_group=unique("inventory"),
        seed_stock=False,
    )
    before = (
        requests_answered("GET", "/stock/{sku}", 404),
        requests_answered("POST", "unmatched", 413),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as client:
            unknown = await client.get("/stock/TEA-001")  # the runtime's pool serves the route
            too_big = await client.post("/stock", content=b"x" * (settings.max_body_bytes + 1))
            metrics = await client.get("/metrics")
    assert unknown.status_code == 404
    assert too_big.status_code == 413
    assert "exceeds" in too_big.json()["detail"]
    after = (
        requests_answered("GET", "/stock/{sku}", 404),
        requests_answered("POST", "unmatched", 413),
    )
    assert [b + 1 for b in before] == list(after)
    counted = [line for line in metrics.text.splitlines() if line.startswith("leadline_http_req")]
    assert any('service="inventory"' in line for line in counted)
