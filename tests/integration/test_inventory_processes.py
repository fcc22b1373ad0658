"""Whole inventory processes (`python -m services.inventory`) on real Kafka and PostgreSQL:
killed with SIGKILL mid-stream, and two of them racing for the last units."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas.inventory.v1 import ReserveStock, StockLine
from services.inventory.store import SCHEMA
from shared.envelope import Envelope
from shared.postgres import install_schema
from tests.support import eventually, unique
from tests.support.processes import ServiceProcess, produce, read_all

pytestmark = pytest.mark.integration


@pytest.fixture
def service_env(pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str) -> dict[str, str]:
    return {
        "INVENTORY_DATABASE_URL": pg_dsn,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
        "INVENTORY_CONSUMER_GROUP": unique("inventory"),
        "INVENTORY_SEED_STOCK": "false",
    }


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
async def stocked(pg_pool: asyncpg.Pool) -> asyncpg.Pool:
    await install_schema(pg_pool, SCHEMA)
    return pg_pool


def _reserve(order_id: str, *skus: str) -> Envelope:
    lines = [StockLine(sku=sku, quantity=1) for sku in skus]
    return Envelope.wrap(
        ReserveStock(order_id=order_id, lines=lines), key=order_id, producer="test"
    )


async def _invariants_hold(pool: asyncpg.Pool) -> None:
    """Stock rows agree with the reservations that hold them, and nothing is oversold."""
    rows = await pool.fetch(
        "SELECT s.sku, s.on_hand, s.reserved, coalesce(sum(l.quantity), 0) AS held"
        " FROM stock s LEFT JOIN reservation_lines l ON l.sku = s.sku"
        " AND l.order_id IN (SELECT order_id FROM reservations WHERE status = 'reserved')"
        " GROUP BY s.sku, s.on_hand, s.reserved"
    )
    for row in rows:
        assert row["reserved"] == row["held"], dict(row)
        assert 0 <= row["reserved"] <= row["on_hand"], dict(row)


async def test_sigkill_mid_stream_loses_no_reservation_and_duplicates_none(
    stocked: asyncpg.Pool,
    service_env: dict[str, str],
    processes: list[ServiceProcess],
    kafka_bootstrap: str,
    catalogue_prefix: str,
    tmp_path: Path,
) -> None:
    await stocked.execute("INSERT INTO stock (sku, on_hand) VALUES ('TEA-001', 1000)")
    orders = [unique("order") for _ in range(300)]
    await produce(
        kafka_bootstrap,
        catalogue_prefix + "inventory.commands",
        [_reserve(o, "TEA-001") for o in orders],
    )
    # a static member id: the restarted process takes its partitions straight back
    env = {**service_env, "INVENTORY_INSTANCE_ID": "inventory-1"}
    first = ServiceProcess("inventory", env, tmp_path / "first.log")
    processes.append(first)
    first.start()
    count = "SELECT count(*) FROM reservations"
    at_kill = await eventually(lambda: stocked.fetchval(count), lambda n: n > 0, timeout=60)
    first.kill()
    done_at_kill = await stocked.fetchval(count)
    assert done_at_kill < len(orders), "the kill came too late to interrupt anything"

    second = ServiceProcess("inventory", env, tmp_path / "second.log")
    processes.append(second)
    second.start()
    await eventually(
        lambda: stocked.fetchval(count), lambda n: n == len(orders), timeout=90, what="all handled"
    )
    assert (
        await stocked.fetchval("SELECT count(*) FROM reservations WHERE status = 'reserved'") == 300
    )
    assert await stocked.fetchval("SELECT reserved FROM stock WHERE sku = 'TEA-001'") == 300
    await _invariants_hold(stocked)

    topic = catalogue_prefix + "inventory.events"
    answers = await eventually(
        lambda: read_all(kafka_bootstrap, topic),
        lambda found: {e.key for e in found if e.type == "StockReserved"} >= set(orders),
        timeout=60,
        what="every reservation published",
    )
    reserved = [e for e in answers if e.type == "StockReserved"]
    # the relay publishes at least once; a repeat is the same event (same id), never a new one
    assert len({e.event_id for e in reserved}) == len(orders)
    assert 0 < at_kill <= done_at_kill


async def _group_members(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
        _error, _group, state, *_rest, members = described.groups[0][:6]
        return len(members) if state == "Stable" else 0
    finally:
        await admin.close()


async def test_two_processes_never_oversell_the_last_units(
    stocked: asyncpg.Pool,
    service_env: dict[str, str],
    processes: list[ServiceProcess],
    kafka_bootstrap: str,
    catalogue_prefix: str,
    tmp_path: Path,
) -> None:
    await stocked.execute(
        "INSERT INTO stock (sku, on_hand) VALUES ('TEA-001', 10), ('MUG-001', 10)"
    )
    for n in (1, 2):
        p = ServiceProcess("inventory", service_env, tmp_path / f"p{n}.log")
        processes.append(p)
        p.start()
    for p in processes:
        await p.ready()
    group = service_env["INVENTORY_CONSUMER_GROUP"]
    await eventually(
        lambda: _group_members(kafka_bootstrap, group),
        lambda n: n == 2,
        timeout=60,
        what="both processes share the group",
    )

    # Every order wants one TEA-001; two of three also one MUG-001, listed in either order,
    # so two orders can meet over the same rows from opposite ends.
    envelopes = []
    for i in range(60):
        skus = [("TEA-001",), ("TEA-001", "MUG-001"), ("MUG-001", "TEA-001")][i % 3]
        envelopes.append(_reserve(unique(f"order{i}"), *skus))
    await produce(kafka_bootstrap, catalogue_prefix + "inventory.commands", envelopes)
    await eventually(
        lambda: stocked.fetchval("SELECT count(*) FROM reservations"),
        lambda n: n == 60,
        timeout=90,
        what="every order answered",
    )
    statuses = dict(
        await stocked.fetch("SELECT status, count(*) FROM reservations GROUP BY status")
    )
    # each success takes one TEA-001, and orders fail only once one SKU has run out
    assert statuses == {"reserved": 10, "failed": 50}
    levels = {
        r["sku"]: (r["on_hand"], r["reserved"]) for r in await stocked.fetch("SELECT * FROM stock")
    }
    assert levels["TEA-001"] == (10, 10)
    await _invariants_hold(stocked)
    # both processes decided reservations: the race was across processes, not inside one
    for p in processes:
        assert "reservation decided" in p.log.read_text()

    answers = await eventually(
        lambda: read_all(kafka_bootstrap, catalogue_prefix + "inventory.events"),
        lambda found: len({e.key for e in found if e.type.startswith("StockReserv")}) == 60,
        timeout=60,
        what="every answer published",
    )
    assert len({e.key for e in answers if e.type == "StockReserved"}) == 10

    for p in processes:  # SIGTERM shuts down cleanly: consumer, relay and pool stopped
        # uvicorn re-raises the signal it handled once shutdown is complete
        assert p.stop() == -signal.SIGTERM
        assert "Application shutdown complete" in p.log.read_text()
