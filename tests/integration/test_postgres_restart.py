"""PostgreSQL goes away for 30 s under load and comes back: checkout, inventory and receipts run
as real processes on a throw-away PostgreSQL cluster of their own (so the shared one stays up
for every other test), and recover without a restart.

An outage is not a message's fault: nothing may be dead-lettered, nothing lost, and every
service must be ready again by itself once the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from schemas.checkout.v1 import ConfirmOrder
from schemas.inventory.v1 import ReserveStock, StockLine
from schemas.warehouse.v1 import StockReceived
from shared.auth import AuthSettings, mint_token
from shared.envelope import Envelope
from shared.kafka.dead_letters import list_dead_letters
from tests.support import eventually
from tests.support.infra import OwnPostgres
from tests.support.processes import ServiceProcess, produce

pytestmark = pytest.mark.integration

SERVICES = ("checkout", "inventory", "receipts")
SECRET = "pg-restart-" + uuid.uuid4().hex  # 43 bytes: a real (non-development) secret
OUTAGE_SECONDS = float(os.environ.get("LEADLINE_PG_OUTAGE_SECONDS", "30"))
ORDERS = 8


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[OwnPostgres]:
    made = OwnPostgres(tmp_path / "run", SERVICES)
    made.up()
    try:
        yield made
    finally:
        made.down()
        made.remove()


@pytest.fixture
async def system(
    cluster: OwnPostgres, catalogue_prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
        "AUTH_JWT_SECRET": SECRET,
        "RECEIPTS_MAILBOX_DIR": str(tmp_path / "mailbox"),
        **{f"{s.upper()}_DATABASE_URL": cluster.dsn(s) for s in SERVICES},
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


class Shipments:
    """StockReceived, one unit of TEA-001 per record: an open-loop load of `per_second` records,
    sent in batches of ten until stopped."""

    def __init__(self, bootstrap: str, topic: str, per_second: float = 40.0) -> None:
        self._bootstrap, self._topic = bootstrap, topic
        self._tick = 10 / per_second
        self._stop = asyncio.Event()
        self._wanted_until: float | None = None
        self._reached = asyncio.Event()
        self.sent = 0

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            while not self._stop.is_set():
                batch = []
                for _ in range(10):
                    arrived = StockReceived(sku="TEA-001", quantity=1, shipment_id=uuid.uuid4().hex)
                    e = Envelope.wrap(arrived, key="TEA-001", producer="warehouse")
                    batch.append(
                        await producer.send(
                            self._topic, e.to_bytes(), key=b"TEA-001", headers=e.headers()
                        )
                    )
                await asyncio.gather(*batch)
                self.sent += len(batch)
                if self._wanted_until is not None and time.monotonic() >= self._wanted_until:
                    self._reached.set()
                # the pace of the load (ends at once when stopped)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._tick)
        finally:
            await producer.stop()

    async def until(self, moment: float) -> None:
        """Return once the load has gone on until `moment` (the load itself is the clock)."""
        self._wanted_until = moment
        await self._reached.wait()

    async def stop(self, task: asyncio.Task[None]) -> None:
        self._stop.set()
        await task


async def count(cluster: OwnPostgres, database: str, query: str) -> int:
    conn = await asyncpg.connect(cluster.dsn(database))
    try:
        n: int = await conn.fetchval(query)
        return n
    finally:
        await conn.close()


async def test_a_30s_database_outage_under_load_loses_nothing_and_needs_no_restart(
    system: dict[str, ServiceProcess],
    cluster: OwnPostgres,
    catalogue_prefix: str,
    kafka_bootstrap: str,
) -> None:
    token = mint_token(AuthSettings(jwt_secret=SecretStr(SECRET)), "alice")
    auth = {"Authorization": f"Bearer {token}"}
    checkout = system["checkout"]
    pids = {name: proc.proc.pid for name, proc in system.items() if proc.proc is not None}
    async with httpx.AsyncClient(timeout=10) as http:
        orders = []
        for _ in range(ORDERS):
            placed = await http.post(
                f"http://127.0.0.1:{checkout.port}/orders",
                json={"lines": [{"sku": "TEA-001", "quantity": 1}]},
                headers=auth,
            )
            assert placed.status_code == 201, placed.text
            orders.append(placed.json()["order_id"])
    tea_before = await count(cluster, "inventory", "SELECT on_hand FROM stock WHERE sku='TEA-001'")

    # The load runs before, during and after the outage: shipments from the warehouse all the
    # time (so handlers are mid-transaction when the database goes), and the saga's commands for
    # every order while it is away.
    warehouse = catalogue_prefix + "warehouse.events"
    load = Shipments(kafka_bootstrap, warehouse)
    loading = asyncio.create_task(load.run())
    on_hand = "SELECT on_hand FROM stock WHERE sku='TEA-001'"
    await eventually(
        lambda: count(cluster, "inventory", on_hand),
        lambda n: n > tea_before + 20,
        what="shipments being applied",
    )
    cluster.down()
    topic = {n: catalogue_prefix + n for n in ("checkout.commands", "inventory.commands")}
    for order_id in orders:
        reserve = ReserveStock(order_id=order_id, lines=[StockLine(sku="TEA-001", quantity=1)])
        confirm = ConfirmOrder(order_id=order_id)
        await produce(
            kafka_bootstrap,
            topic["inventory.commands"],
            [Envelope.wrap(reserve, key=order_id, producer="saga")],
        )
        await produce(
            kafka_bootstrap,
            topic["checkout.commands"],
            [Envelope.wrap(confirm, key=order_id, producer="saga")],
        )
    async with httpx.AsyncClient(timeout=30) as http:
        # a client meanwhile is told to come back later, and nothing is half-written
        during = await http.post(
            f"http://127.0.0.1:{checkout.port}/orders",
            json={"lines": [{"sku": "TEA-001", "quantity": 1}]},
            headers=auth,
        )
    assert during.status_code == 503, during.text
    assert "retry" in during.json()["detail"]
    assert during.headers["Retry-After"].isdigit()
    await load.until(time.monotonic() + OUTAGE_SECONDS)
    cluster.up()
    await load.stop(loading)
    shipments = load.sent

    for proc in system.values():  # back by themselves, each the very same process
        await proc.ready(timeout=90)
    assert {name: proc.proc.pid for name, proc in system.items() if proc.proc is not None} == pids

    placed = "SELECT count(*) FROM events WHERE type = 'OrderPlaced'"
    assert await count(cluster, "checkout", placed) == ORDERS  # the refused one left nothing
    confirmed = "SELECT count(*) FROM events WHERE type = 'OrderConfirmed'"
    await eventually(
        lambda: count(cluster, "checkout", confirmed),
        lambda n: n == ORDERS,
        timeout=90,
        what="every order confirmed",
    )
    await eventually(
        lambda: count(cluster, "receipts", "SELECT count(*) FROM receipts"),
        lambda n: n == ORDERS,
        timeout=90,
        what="every receipt issued",
    )
    reservations = "SELECT count(*) FROM reservations WHERE status = 'reserved'"
    await eventually(
        lambda: count(cluster, "inventory", reservations),
        lambda n: n == ORDERS,
        timeout=90,
        what="every order reserved",
    )
    await eventually(
        lambda: count(cluster, "inventory", on_hand),
        lambda n: n == tea_before + shipments,
        timeout=90,
        what="every shipment counted once",
    )
    for consumed in ("checkout.commands", "checkout.events", "inventory.commands"):
        dlq = catalogue_prefix + consumed + ".dlq"
        assert await list_dead_letters(kafka_bootstrap, dlq) == [], dlq
    assert await list_dead_letters(kafka_bootstrap, warehouse + ".dlq") == []
