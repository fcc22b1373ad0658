"""Read-your-writes across services: what checkout acknowledged, the projection shows to a
client that names the version checkout answered with (the ETag), every time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Infra
from tests.support.system import System, bearer, databases, running_system

pytestmark = pytest.mark.integration

TRIES = int(os.environ.get("LEADLINE_RYW_TRIES", "100"))


async def read_after(
    system: System, customer: str, order_id: str, etag: str
) -> tuple[int, dict[str, Any]]:
    version = int(etag.strip('"'))
    response = await system.http.get(
        system.url("projection", f"/orders/{order_id}"),
        params={"min_version": version},
        headers=bearer(customer),
    )
    return response.status_code, response.json()


async def test_every_placed_and_cancelled_order_is_read_back_at_its_version(
    infra: Infra, catalogue_prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with (
        databases(infra.postgres_dsn) as dsns,
        running_system(
            dsns, catalogue_prefix, kafka_bootstrap, tmp_path, with_projection=True
        ) as system,
    ):
        misses: list[tuple[str, int, dict[str, Any]]] = []
        for i in range(TRIES):
            # every tenth customer's payment never answers, so its order can still be cancelled
            customer = f"silent-{i}" if i % 10 == 0 else f"reader-{i}"
            placed = await system.http.post(
                system.url("checkout", "/orders"),
                json={"lines": [{"sku": "TEA-001", "quantity": 1}]},
                headers=bearer(customer),
            )
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["order_id"]
            status, body = await read_after(system, customer, order_id, placed.headers["ETag"])
            if status != 200 or body["version"] < 1 or body["customer_id"] != customer:
                misses.append(("placed", status, body))
            if customer.startswith("silent"):
                cancelled = await system.http.post(
                    system.url("checkout", f"/orders/{order_id}/cancel"),
                    json={"reason": "changed my mind"},
                    headers=bearer(customer),
                )
                assert cancelled.status_code == 200, cancelled.text
                etag = cancelled.headers["ETag"]
                status, body = await read_after(system, customer, order_id, etag)
                if status != 200 or body["status"] != "cancelled":
                    misses.append(("cancelled", status, body))
        assert misses == [], f"{len(misses)} of {TRIES} reads missed their own write: {misses[:3]}"
