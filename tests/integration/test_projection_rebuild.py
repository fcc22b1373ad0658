"""A live rebuild of every view, run by the operator's command while events keep arriving and
clients keep reading: no query fails, and afterwards each view holds exactly what a projection
built from scratch over the same topics holds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from schemas.checkout.v1 import OrderConfirmed, OrderRejected
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.inventory.v1 import StockLevelChanged, StockLine, StockReservationFailed, StockReserved
from schemas.payments.v1 import PaymentAuthorized
from schemas.receipts.v1 import ReceiptIssued
from services.projection.consumers import VIEWS
from services.projection.rebuild import rebuild
from services.projection.store import SCHEMA, table_rows
from shared.envelope import Envelope
from shared.postgres import install_schema
from tests.conftest import Infra
from tests.support import eventually
from tests.support.processes import ROOT, ServiceProcess
from tests.support.system import SECRET, bearer

pytestmark = pytest.mark.integration

ORDERS = int(os.environ.get("LEADLINE_REBUILD_ORDERS", "600"))
SKUS = [f"RB{n:03d}-X" for n in range(20)]
CUSTOMERS = [f"rb-customer-{n}" for n in range(30)]


def order_events(n: int, start: datetime) -> list[tuple[str, Envelope]]:
    """One order's records as the services would publish them, most confirmed, some rejected."""
    order_id, customer = str(uuid.uuid4()), random.choice(CUSTOMERS)
    at = start + timedelta(hours=n % 72)  # several days of figures
    lines = [
        OrderLine(sku=sku, quantity=q, unit_price_cents=250, line_total_cents=250 * q)
        for sku, q in {random.choice(SKUS): random.randint(1, 3) for _ in range(2)}.items()
    ]
    total = sum(line.line_total_cents for line in lines)

    def wrap(message: Any, producer: str, version: int | None = None) -> Envelope:
        envelope = Envelope.wrap(message, key=order_id, producer=producer)
        return envelope.model_copy(update={"occurred_at": at, "stream_version": version})

    placed = OrderPlaced(
        order_id=order_id, customer_id=customer, lines=lines, currency="EUR", total_cents=total
    )
    out = [("checkout.events", wrap(placed, "checkout", 1))]
    if n % 7 == 0:
        failed = StockReservationFailed(order_id=order_id, reason="out of stock", shortages=[])
        out.append(("inventory.events", wrap(failed, "inventory")))
        rejected = OrderRejected(order_id=order_id, reason="out of stock")
        out.append(("checkout.events", wrap(rejected, "checkout", 2)))
        return out
    reserved = StockReserved(
        order_id=order_id, lines=[StockLine(sku=x.sku, quantity=x.quantity) for x in lines]
    )
    paid = PaymentAuthorized(order_id=order_id, payment_id=f"pay-{order_id}", amount_cents=total)
    receipt = ReceiptIssued(
        order_id=order_id,
        customer_id=customer,
        receipt_number=f"RB-{n:08d}",
        currency="EUR",
        subtotal_cents=total,
        tax_cents=0,
        total_cents=total,
        issued_at=at,
    )
    level = StockLevelChanged(
        sku=lines[0].sku, on_hand=10_000, reserved=n % 1000, available=10_000 - n % 1000
    )
    return [
        *out,
        ("inventory.events", wrap(reserved, "inventory")),
        ("inventory.events", wrap(level, "inventory").model_copy(update={"key": level.sku})),
        ("payments.events", wrap(paid, "payment-provider")),
        ("checkout.events", wrap(OrderConfirmed(order_id=order_id), "checkout", 2)),
        ("receipts.events", wrap(receipt, "receipts")),
    ]


class Traffic:
    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self.producer, self.prefix = producer, prefix
        self.start = datetime(2026, 3, 1, tzinfo=UTC)
        self.orders: list[tuple[str, str]] = []  # (order id, customer)
        self.n = 0

    async def send(self, count: int) -> None:
        sent = []
        for _ in range(count):
            self.n += 1
            records = order_events(self.n, self.start)
            for topic, e in records:
                sent.append(
                    await self.producer.send(
                        self.prefix + topic, e.to_bytes(), key=e.key.encode(), headers=e.headers()
                    )
                )
            placed = records[0][1]
            self.orders.append((placed.key, placed.payload["customer_id"]))
        await asyncio.gather(*sent)


async def dump(dsn: str) -> dict[str, list[dict[str, object]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            f"{view.name}.{table}": await table_rows(conn, view.schema, table, order)
            for view in VIEWS.values()
            for table, order in view.rows
        }
    finally:
        await conn.close()


def differences(live: dict[str, list[Any]], reference: dict[str, list[Any]]) -> list[str]:
    found = []
    for table in reference:
        mine, theirs = live[table], reference[table]
        if mine != theirs:
            extra = [r for r in mine if r not in theirs][:2]
            missing = [r for r in theirs if r not in mine][:2]
            found.append(
                f"{table}: {len(mine)} rows vs {len(theirs)}; extra {extra} missing {missing}"
            )
    return found


@contextlib.asynccontextmanager
async def two_databases(maintenance_dsn: str) -> AsyncIterator[tuple[str, str]]:
    base = maintenance_dsn.rpartition("/")[0]
    names = [f"rebuild_{role}_{uuid.uuid4().hex[:10]}" for role in ("live", "ref")]
    admin = await asyncpg.connect(maintenance_dsn)
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def decided_orders(dsn: str) -> int:
    """Orders the live view shows placed and decided (every order of the traffic ends so)."""
    conn = await asyncpg.connect(dsn)
    try:
        schema = VIEWS["orders"].schema
        count: int = await conn.fetchval(
            f"SELECT count(*) FROM {schema}.orders WHERE placed_at IS NOT NULL AND version >= 2"
        )
        return count
    finally:
        await conn.close()


async def settled(live_dsn: str, ref_dsn: str, timeout: float) -> list[str]:
    """The differences left once both databases hold the same rows, or at the deadline."""

    async def diff() -> list[str]:
        return differences(await dump(live_dsn), await dump(ref_dsn))

    try:
        return await eventually(diff, lambda d: not d, timeout=timeout, interval=0.5)
    except AssertionError:
        return await diff()


async def test_every_view_rebuilt_under_traffic_equals_a_projection_built_from_scratch(
    infra: Infra, catalogue_prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with two_databases(infra.postgres_dsn) as (live_dsn, ref_dsn):
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
            "AUTH_JWT_SECRET": SECRET,
            "PROJECTION_DATABASE_URL": live_dsn,
        }
        live = ServiceProcess("projection", env, tmp_path / "live.log")
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        http = httpx.AsyncClient(timeout=10)
        try:
            live.start()
            await live.ready(timeout=90)
            traffic = Traffic(producer, catalogue_prefix)
            await traffic.send(ORDERS)
            url = f"http://127.0.0.1:{live.port}"
            # the live view has the whole history before its rebuild starts: every order, not
            # only the last one (the partitions are applied in no particular order), so a read
            # of any of them during the rebuild has an answer to compare with
            await eventually(
                lambda: decided_orders(live_dsn),
                lambda n: n == ORDERS,
                timeout=120,
                what="the live view applied the history",
            )

            rebuilt = asyncio.Event()
            answers: list[tuple[str, int]] = []
            during = 0

            async def keep_sending() -> None:
                # paced by the live view itself: the next orders once it shows the last ones
                nonlocal during
                while not rebuilt.is_set():
                    await traffic.send(10)
                    during += 10
                    order_id, customer = traffic.orders[-1]
                    await eventually(
                        lambda order_id=order_id, customer=customer: http.get(
                            f"{url}/orders/{order_id}",
                            params={"min_version": 2},
                            headers=bearer(customer),
                        ),
                        lambda r: r.status_code == 200,
                        timeout=60,
                        what="the live view applied new orders during the rebuild",
                    )

            async def keep_reading() -> None:
                known = traffic.orders[:ORDERS]
                admin = bearer("ops", "admin")
                while not rebuilt.is_set():
                    order_id, customer = random.choice(known)
                    for path, params, headers in (
                        (f"/orders/{order_id}", {}, bearer(customer)),
                        ("/customers/me/orders", {"limit": 5}, bearer(customer)),
                        ("/stock", {"sku": SKUS[:3]}, bearer(customer)),
                        ("/stats/sales", {"from": "2026-03-01", "to": "2026-03-05"}, admin),
                        ("/stats/outcomes", {"from": "2026-03-01", "to": "2026-03-05"}, admin),
                    ):
                        response = await http.get(url + path, params=params, headers=headers)
                        answers.append((path, response.status_code))

            async def rebuild(view: str) -> tuple[int, bytes]:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "services.projection",
                    "rebuild",
                    view,
                    cwd=ROOT,
                    env={**os.environ, "LEADLINE_ENV": "local", **env},
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                out, _ = await proc.communicate()
                return proc.returncode or 0, out

            async def rebuild_all() -> list[tuple[int, bytes]]:
                try:
                    return await asyncio.gather(*(rebuild(v) for v in VIEWS))
                finally:
                    rebuilt.set()

            results, _, _ = await asyncio.gather(rebuild_all(), keep_sending(), keep_reading())
            await traffic.send(10)  # and after the swap

            for view, (code, out) in zip(VIEWS, results, strict=True):
                assert code == 0, f"rebuild {view} failed:\n{out.decode()[-2000:]}"
                assert b"swapped in" in out, out.decode()[-2000:]
            assert during > 0, "no traffic reached the topics while the views were rebuilt"
            failed = [a for a in answers if a[1] != 200]
            assert answers, "no query was made while the views were rebuilt"
            assert failed == [], f"{len(failed)} of {len(answers)} queries failed: {failed[:5]}"

            reference = ServiceProcess(
                "projection",
                {**env, "PROJECTION_DATABASE_URL": ref_dsn, "PROJECTION_CONSUMER_GROUP": "ref"},
                tmp_path / "reference.log",
            )
            reference.start()
            try:
                await reference.ready(timeout=90)
                diff = await settled(live_dsn, ref_dsn, timeout=120)
            finally:
                reference.stop()
            assert diff == [], "\n".join(diff)
            rows = await dump(live_dsn)
            assert len(rows["orders.orders"]) == traffic.n
        finally:
            await http.aclose()
            await producer.stop()
            live.stop()


async def test_a_view_whose_tables_changed_is_rebuilt_into_the_new_shape(
    infra: Infra, catalogue_prefix: str, kafka_bootstrap: str
) -> None:
    """What an older version of the sales view left (a per-day counter table, no index on day)
    is replaced by the current code's tables, filled from the topics."""
    view = VIEWS["sales"]
    async with two_databases(infra.postgres_dsn) as (dsn, _unused):
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            traffic = Traffic(producer, catalogue_prefix)
            await traffic.send(30)
        finally:
            await producer.stop()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        assert pool is not None
        try:
            await install_schema(pool, SCHEMA)
            old = view.ddl(view.schema).replace(
                f"CREATE INDEX IF NOT EXISTS counted_by_day ON {view.schema}.counted (day);", ""
            )
            await pool.execute(old + f"CREATE TABLE {view.schema}.daily (day date, n int);")
            result = await rebuild(
                view,
                pool,
                bootstrap_servers=kafka_bootstrap,
                topic=lambda name: catalogue_prefix + name,
                consumer_name=view.consumer_name("projection"),
            )
            tables = await pool.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", view.schema
            )
            index = await pool.fetchval("SELECT to_regclass($1)", f"{view.schema}.counted_by_day")
            counted = await pool.fetchval(f"SELECT count(*) FROM {view.schema}.counted")
        finally:
            await pool.close()
    assert sorted(t["tablename"] for t in tables) == ["counted", "inbox", "order_lines"]
    assert index is not None
    confirmed = sum(1 for n in range(1, 31) if n % 7 != 0)
    assert counted == confirmed
    assert result.applied == 30 + confirmed  # every OrderPlaced and OrderConfirmed
