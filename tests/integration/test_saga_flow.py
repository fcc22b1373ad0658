"""The order saga end to end: checkout, inventory, receipts, the payment-provider simulator and
the orchestrator run as real processes on real Kafka and PostgreSQL, each with its own
database; a customer places orders over HTTP and the saga alone takes each to its end."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from shared.auth import AuthSettings, mint_token
from tests.conftest import Infra
from tests.support import eventually
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

SECRET = "saga-flow-" + uuid.uuid4().hex
AUTH = AuthSettings(jwt_secret=SECRET)
DATABASES = ("checkout", "inventory", "receipts", "simulator", "orchestrator")
PAY_TIMEOUT = 6.0


@pytest.fixture
async def databases(infra: Infra) -> AsyncIterator[dict[str, str]]:
    base = infra.postgres_dsn.rpartition("/")[0]
    names = {s: f"saga_{s}_{uuid.uuid4().hex[:10]}" for s in DATABASES}
    admin = await asyncpg.connect(infra.postgres_dsn)
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield {s: f"{base}/{n}" for s, n in names.items()}
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class System:
    def __init__(self, procs: dict[str, ServiceProcess], tmp: Path) -> None:
        self.procs = procs
        self.mailbox = tmp / "mailbox"
        self.http = httpx.AsyncClient(timeout=10)

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.procs[service].port}{path}"

    async def place(self, customer: str, lines: list[dict[str, Any]]) -> str:
        response = await self.http.post(
            self.url("checkout", "/orders"), json={"lines": lines}, headers=bearer(customer)
        )
        assert response.status_code == 201, response.text
        order_id: str = response.json()["order_id"]
        return order_id

    async def saga(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(
            self.url("orchestrator", f"/sagas/{order_id}"), headers=bearer("ops", "admin")
        )
        return response.json() if response.status_code == 200 else {"status": None}

    async def ends(self, order_id: str, timeout: float = 60.0) -> dict[str, Any]:
        terminal = {"completed", "rejected", "cancelled", "failed"}
        return await eventually(
            lambda: self.saga(order_id),
            lambda s: s["status"] in terminal,
            timeout=timeout,
            what=f"saga of {order_id} ended",
        )

    async def order(self, order_id: str, customer: str) -> dict[str, Any]:
        response = await self.http.get(
            self.url("checkout", f"/orders/{order_id}"), headers=bearer(customer)
        )
        body: dict[str, Any] = response.json()
        return body

    async def stock(self, sku: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get(self.url("inventory", f"/stock/{sku}"))).json()
        return body

    async def payment(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(
            self.url("simulator", f"/payments/{order_id}"), headers=bearer("ops", "admin")
        )
        body: dict[str, Any] = response.json()
        return body


def bearer(subject: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(AUTH, subject, scopes)}"}


@pytest.fixture
async def system(
    databases: dict[str, str], catalogue_prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[System]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
        "AUTH_JWT_SECRET": SECRET,
        "RECEIPTS_MAILBOX_DIR": str(tmp_path / "mailbox"),
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "orchestrator"),
        "ORCHESTRATOR_PAY_TIMEOUT": str(PAY_TIMEOUT),
        **{f"{s.upper()}_DATABASE_URL": dsn for s, dsn in databases.items()},
    }
    procs = {
        s: ServiceProcess(s, env, tmp_path / f"{s}.log")
        for s in ("checkout", "inventory", "receipts", "orchestrator")
    }
    procs["simulator"] = ServiceProcess(
        "payment_provider",
        env,
        tmp_path / "simulator.log",
        package="simulators",
        env_prefix="SIMULATOR",
    )
    made = System(procs, tmp_path)
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            await proc.ready(timeout=90)
        yield made
    finally:
        await made.http.aclose()
        for proc in procs.values():
            proc.stop()


async def test_an_order_is_confirmed_and_its_receipt_mailed_by_the_saga_alone(
    system: System,
) -> None:
    before = await system.stock("TEA-001")
    order_id = await system.place("alice", [{"sku": "TEA-001", "quantity": 2}])

    saga = await system.ends(order_id)
    assert saga["status"] == "completed"
    assert [s["type"] for s in saga["steps"]] == [
        "OrderPlaced",
        "StockReserved",
        "PaymentAuthorized",
        "OrderConfirmed",
        "ReceiptIssued",
    ]
    assert [s["commands"] for s in saga["steps"][:3]] == [
        ["ReserveStock"],
        ["RequestPayment"],
        ["ConfirmOrder"],
    ]
    assert (await system.order(order_id, "alice"))["status"] == "confirmed"
    after = await system.stock("TEA-001")
    assert after["reserved"] == before["reserved"] + 2
    assert (await system.payment(order_id))["status"] == "authorized"
    mails = await eventually(
        lambda: sorted(system.mailbox.glob("*.eml")), bool, what="receipt mailed"
    )
    assert mails == [system.mailbox / f"{saga['receipt_number']}.eml"]


async def test_out_of_stock_is_rejected_and_nothing_is_held(system: System) -> None:
    before = await system.stock("KETTLE-01")
    order_id = await system.place("alice", [{"sku": "KETTLE-01", "quantity": 100}])
    saga = await system.ends(order_id)
    assert (saga["status"], saga["reason"]) == ("rejected", "insufficient stock for KETTLE-01")
    order = await system.order(order_id, "alice")
    assert (order["status"], order["reason"]) == ("rejected", "insufficient stock for KETTLE-01")
    assert await system.stock("KETTLE-01") == before
    assert (await system.payment(order_id)).get("status") in (None, "unknown")


async def test_a_declined_payment_releases_the_stock_and_rejects_the_order(
    system: System,
) -> None:
    before = await system.stock("CUP-001")
    order_id = await system.place("decline-bob", [{"sku": "CUP-001", "quantity": 1}])
    saga = await system.ends(order_id)
    assert saga["status"] == "rejected"
    assert saga["reason"].startswith("payment declined")
    assert (await system.order(order_id, "decline-bob"))["status"] == "rejected"
    assert await system.stock("CUP-001") == before  # reserved, then released


async def test_a_payment_that_never_answers_is_released_voided_and_rejected(
    system: System,
) -> None:
    before = await system.stock("POT-001")
    order_id = await system.place("silent-carol", [{"sku": "POT-001", "quantity": 1}])
    saga = await system.ends(order_id, timeout=PAY_TIMEOUT + 60)
    assert (saga["status"], saga["reason"]) == ("rejected", "payment timed out")
    commands = [c for s in saga["steps"] for c in s["commands"]]
    assert commands == [
        "ReserveStock",
        "RequestPayment",
        "ReleaseStock",
        "VoidPayment",
        "RejectOrder",
    ]
    assert (await system.order(order_id, "silent-carol"))["status"] == "rejected"
    assert await system.stock("POT-001") == before
    assert (await system.payment(order_id))["status"] == "voided"


async def test_a_cancel_while_paying_releases_and_voids_and_ends_cancelled(
    system: System,
) -> None:
    before = await system.stock("TEA-002")
    order_id = await system.place("silent-dave", [{"sku": "TEA-002", "quantity": 1}])
    await eventually(lambda: system.saga(order_id), lambda s: s["status"] == "paying")
    cancel = await system.http.post(
        system.url("checkout", f"/orders/{order_id}/cancel"), headers=bearer("silent-dave")
    )
    assert cancel.status_code == 200, cancel.text
    saga = await system.ends(order_id)
    assert saga["status"] == "cancelled"
    assert [c for s in saga["steps"] for c in s["commands"]][-2:] == [
        "ReleaseStock",
        "VoidPayment",
    ]
    assert await system.stock("TEA-002") == before


async def test_a_cancel_while_reserving_releases_whatever_was_reserved(system: System) -> None:
    inventory = system.procs["inventory"].proc
    assert inventory is not None
    before = await system.stock("TEA-003")
    os.kill(inventory.pid, signal.SIGSTOP)  # inventory holds the ReserveStock for now
    try:
        order_id = await system.place("erin", [{"sku": "TEA-003", "quantity": 3}])
        await eventually(lambda: system.saga(order_id), lambda s: s["status"] == "reserving")
        cancel = await system.http.post(
            system.url("checkout", f"/orders/{order_id}/cancel"), headers=bearer("erin")
        )
        assert cancel.status_code == 200, cancel.text
        await eventually(lambda: system.saga(order_id), lambda s: s["status"] == "cancelling")
    finally:
        os.kill(inventory.pid, signal.SIGCONT)
    saga = await system.ends(order_id)
    assert saga["status"] == "cancelled"
    assert await system.stock("TEA-003") == before
