"""A whole receipts process (`python -m services.receipts`) killed with SIGKILL mid-stream and
restarted: no receipt lost, none doubled, numbers still gap-free, every receipt delivered."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import pytest

from services.receipts.store import SCHEMA
from shared.auth import AuthSettings, mint_token
from shared.postgres import install_schema
from tests.integration.test_receipts_consumer import confirmed, placed
from tests.support import eventually, unique
from tests.support.processes import ServiceProcess, produce, read_all

pytestmark = pytest.mark.integration


async def test_sigkill_mid_stream_loses_no_receipt_and_doubles_none(
    pg_pool: asyncpg.Pool,
    pg_dsn: str,
    kafka_bootstrap: str,
    catalogue_prefix: str,
    tmp_path: Path,
) -> None:
    await install_schema(pg_pool, SCHEMA)
    orders = [unique("order") for _ in range(150)]
    customers = {o: f"cust{i % 7}" for i, o in enumerate(orders)}
    await produce(
        kafka_bootstrap,
        catalogue_prefix + "checkout.events",
        [e for o in orders for e in (placed(o, customers[o]), confirmed(o))],
    )
    mailbox = tmp_path / "mailbox"
    env = {
        "RECEIPTS_DATABASE_URL": pg_dsn,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
        "RECEIPTS_CONSUMER_GROUP": unique("receipts"),
        "RECEIPTS_INSTANCE_ID": "receipts-1",
        "RECEIPTS_MAILBOX_DIR": str(mailbox),
        "RECEIPTS_DELIVERY_POLL_SECONDS": "0.2",
    }
    count = "SELECT count(*) FROM receipts"
    first = ServiceProcess("receipts", env, tmp_path / "first.log")
    first.start()
    try:
        await eventually(lambda: pg_pool.fetchval(count), lambda n: n > 0, timeout=60)
    finally:
        first.kill()
    assert await pg_pool.fetchval(count) < len(orders), "the kill came too late"

    second = ServiceProcess("receipts", env, tmp_path / "second.log")
    second.start()
    try:
        await eventually(
            lambda: pg_pool.fetchval(count), lambda n: n == len(orders), timeout=90, what="all"
        )
        sequences = [r["sequence"] for r in await pg_pool.fetch("SELECT sequence FROM receipts")]
        assert sorted(sequences) == list(range(1, len(orders) + 1))
        await eventually(
            lambda: pg_pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'delivered'"),
            lambda n: n == len(orders),
            timeout=60,
            what="every receipt delivered",
        )
        files = sorted(p.name for p in mailbox.iterdir() if not p.name.startswith("."))
        assert files == [f"LL-{n:08d}.eml" for n in range(1, len(orders) + 1)]
        issued = await eventually(
            lambda: read_all(kafka_bootstrap, catalogue_prefix + "receipts.events"),
            lambda found: {e.key for e in found} >= set(orders),
            timeout=60,
            what="every ReceiptIssued published",
        )
        assert len({e.event_id for e in issued}) == len(orders)

        await second.ready()
        order = orders[0]
        auth = AuthSettings(environment="local")  # the dev secret, as the local process uses
        url = f"http://127.0.0.1:{second.port}/receipts/{order}"
        async with httpx.AsyncClient(timeout=5) as client:
            owner = await client.get(url, headers=_bearer(auth, customers[order]))
            stranger = await client.get(url, headers=_bearer(auth, "someone-else"))
        assert owner.status_code == 200
        assert owner.json()["order_id"] == order
        assert owner.json()["delivery"] == "delivered"
        assert stranger.status_code == 404
    finally:
        second.stop()


def _bearer(auth: AuthSettings, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(auth, subject)}"}
