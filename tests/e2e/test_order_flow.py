"""The whole system through HTTP and Kafka: checkout, inventory and receipts run as real
processes on real Kafka and PostgreSQL, each with its own database.

The orchestrator is not built yet, so this test sends the saga's commands itself (ReserveStock,
ConfirmOrder) exactly as the saga will: enveloped, keyed by order id, with deterministic ids.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from schemas.checkout.v1 import ConfirmOrder
from schemas.inventory.v1 import ReserveStock, StockLine
from shared.auth import AuthSettings, mint_token
from shared.envelope import Envelope, deterministic_id
from tests.conftest import Infra
from tests.support import eventually
from tests.support.processes import ServiceProcess, produce, read_all

pytestmark = pytest.mark.e2e

SECRET = "e2e-" + uuid.uuid4().hex
SERVICES = ("checkout", "inventory", "receipts")


@pytest.fixture
async def databases(infra: Infra) -> AsyncIterator[dict[str, str]]:
    """A fresh database per service, dropped afterwards."""
    base = infra.postgres_dsn.rpartition("/")[0]
    names = {s: f"e2e_{s}_{uuid.uuid4().hex[:10]}" for s in SERVICES}
    admin = await asyncpg.connect(infra.postgres_dsn)
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield {s: f"{base}/{n}" for s, n in names.items()}
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def system(
    databases: dict[str, str], catalogue_prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
        "AUTH_JWT_SECRET": SECRET,
        # not local: the system starts as a deployment would, on its own secret
        "LEADLINE_ENV": "production",
        "RECEIPTS_MAILBOX_DIR": str(tmp_path / "mailbox"),
        **{f"{s.upper()}_DATABASE_URL": dsn for s, dsn in databases.items()},
    }
    procs = {s: ServiceProcess(s, env, tmp_path / f"{s}.log") for s in SERVICES}
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            await proc.ready()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def url(proc: ServiceProcess, path: str) -> str:
    return f"http://127.0.0.1:{proc.port}{path}"


async def envelopes_on(bootstrap: str, topic: str, order_id: str) -> list[Envelope]:
    return [e for e in await read_all(bootstrap, topic) if e.correlation_id == order_id]


async def confirm_outcomes(
    http: httpx.AsyncClient, checkout: ServiceProcess, topic: str
) -> dict[str, float]:
    """How checkout's consumer settled ConfirmOrder on `topic`, from its /metrics."""
    text = (await http.get(url(checkout, "/metrics"))).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "leadline_messages_handled_total"
                and labels.get("topic") == topic
                and labels.get("type") == "ConfirmOrder"
            ):
                found[labels["outcome"]] = sample.value
    return found


def has(type_: str) -> Callable[[list[Envelope]], bool]:
    return lambda found: any(e.type == type_ for e in found)


async def test_an_order_is_placed_reserved_confirmed_and_receipted(
    system: dict[str, ServiceProcess], catalogue_prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    token = mint_token(AuthSettings(jwt_secret=SecretStr(SECRET)), "alice")
    auth = {"Authorization": f"Bearer {token}"}
    checkout, inventory, receipts = (system[s] for s in SERVICES)
    topic = {n: catalogue_prefix + n for n in ("checkout.events", "inventory.events")}

    async with httpx.AsyncClient(timeout=10) as http:
        before = (await http.get(url(inventory, "/stock/TEA-001"))).json()
        placed = await http.post(
            url(checkout, "/orders"),
            json={"lines": [{"sku": "TEA-001", "quantity": 2}]},
            headers=auth | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert placed.status_code == 201, placed.text
        order: dict[str, Any] = placed.json()
        order_id = order["order_id"]

        [event] = await eventually(
            lambda: envelopes_on(kafka_bootstrap, topic["checkout.events"], order_id),
            has("OrderPlaced"),
            what="OrderPlaced on checkout.events",
        )
        assert (event.type, event.version, event.key) == ("OrderPlaced", 2, order_id)

        # the saga's first step: reserve what was ordered
        reserve = Envelope.wrap(
            ReserveStock(order_id=order_id, lines=[StockLine(sku="TEA-001", quantity=2)]),
            key=order_id,
            producer="e2e-saga",
            caused_by=event,
            event_id=deterministic_id(order_id, "reserve"),
        )
        await produce(kafka_bootstrap, catalogue_prefix + "inventory.commands", [reserve])
        reserved = await eventually(
            lambda: envelopes_on(kafka_bootstrap, topic["inventory.events"], order_id),
            has("StockReserved"),
            what="StockReserved on inventory.events",
        )
        assert all(e.causation_id == reserve.event_id for e in reserved)
        stock = (await http.get(url(inventory, "/stock/TEA-001"))).json()
        assert stock["reserved"] == before["reserved"] + 2
        assert stock["on_hand"] == stock["available"] + stock["reserved"]

        # (payment authorised upstream) the saga confirms; sent twice, applied once
        confirm = Envelope.wrap(
            ConfirmOrder(order_id=order_id),
            key=order_id,
            producer="e2e-saga",
            event_id=deterministic_id(order_id, "confirm"),
        )
        await produce(kafka_bootstrap, catalogue_prefix + "checkout.commands", [confirm, confirm])

        async def order_status() -> str:
            response = await http.get(url(checkout, f"/orders/{order_id}"), headers=auth)
            return str(response.json()["status"])

        await eventually(order_status, lambda s: s == "confirmed", what="order confirmed")
        # confirming twice changes nothing by itself: only checkout's own count tells that the
        # inbox, not the aggregate, stopped the second delivery
        commands = catalogue_prefix + "checkout.commands"
        outcomes = await eventually(
            lambda: confirm_outcomes(http, checkout, commands),
            lambda found: sum(found.values()) == 2,
            what="both deliveries settled",
        )
        assert outcomes == {"applied": 1.0, "duplicate": 1.0}

        async def receipt() -> httpx.Response:
            return await http.get(url(receipts, f"/receipts/{order_id}"), headers=auth)

        issued = await eventually(receipt, lambda r: r.status_code == 200, what="receipt issued")
        body = issued.json()
        assert body["subtotal_cents"] == order["total_cents"]
        assert body["total_cents"] == body["subtotal_cents"] + body["tax_cents"]

        number = body["number"]

        async def mailbox() -> list[str]:
            return sorted(p.name for p in (tmp_path / "mailbox").glob("*.eml"))

        assert await eventually(mailbox, bool, what="receipt delivered") == [f"{number}.eml"]

    confirmed = [
        e
        for e in await envelopes_on(kafka_bootstrap, topic["checkout.events"], order_id)
        if e.type == "OrderConfirmed"
    ]
    assert len(confirmed) == 1
