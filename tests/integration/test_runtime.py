"""The shared service runtime on real PostgreSQL and Kafka: housekeeping prunes what is past its
retention and nothing else, survives failed passes; readiness follows the parts it runs; start
and stop leave nothing behind and stop in the order that keeps the outbox drained."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from schemas.checkout.v1 import OrderConfirmed
from shared.envelope import Envelope
from shared.http.health import HealthChecks, health_router
from shared.kafka.consumer import ConsumerRunner, Subscription
from shared.kafka.dead_letters import dead_letter_topic
from shared.postgres import install_schema
from shared.postgres.uow import PostgresUnitOfWork
from shared.runtime import Housekeeping, ServiceRuntime, lifespan
from tests.conftest import TopicFactory
from tests.integration.consumer_helpers import delete_topics
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


def bare(dsn: str, kafka: str, **parts: Any) -> ServiceRuntime:
    """A runtime with only what a test names (no relay unless asked)."""
    parts.setdefault("with_relay", False)
    return ServiceRuntime(name=unique("rt"), database_url=dsn, bootstrap_servers=kafka, **parts)


async def add_inbox(pool: asyncpg.Pool, days_ago: int) -> uuid.UUID:
    event_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO inbox (consumer, event_id, processed_at)"
        " VALUES ('c', $1, now() - make_interval(days => $2))",
        event_id,
        days_ago,
    )
    return event_id


async def add_outbox(pool: asyncpg.Pool, sent_days_ago: int | None, created_days_ago: int) -> int:
    row_id: int = await pool.fetchval(
        "INSERT INTO outbox (topic, key, event_id, value, headers, created_at, sent_at)"
        " VALUES ('t', 'k', $1, '\\x00', '[]', now() - make_interval(days => $2),"
        " now() - make_interval(days => $3)) RETURNING id",
        uuid.uuid4(),
        created_days_ago,
        sent_days_ago,  # NULL stays NULL: unsent
    )
    return row_id


async def inbox_ids(pool: asyncpg.Pool) -> set[uuid.UUID]:
    return {r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox")}


async def outbox_ids(pool: asyncpg.Pool) -> set[int]:
    return {r["id"] for r in await pool.fetch("SELECT id FROM outbox")}


async def test_housekeeping_prunes_old_inbox_and_sent_outbox_rows_and_keeps_the_rest(
    pg_pool: asyncpg.Pool, pg_dsn: str, kafka_bootstrap: str
) -> None:
    await install_schema(pg_pool)
    old_inbox, recent_inbox = await add_inbox(pg_pool, 15), await add_inbox(pg_pool, 13)
    old_sent = await add_outbox(pg_pool, sent_days_ago=8, created_days_ago=9)
    recent_sent = await add_outbox(pg_pool, sent_days_ago=6, created_days_ago=9)
    unsent = await add_outbox(pg_pool, sent_days_ago=None, created_days_ago=60)

    # default retention: 14 days of inbox, 7 of sent outbox; the first pass runs at start
    async with bare(pg_dsn, kafka_bootstrap).running():
        await eventually(
            lambda: inbox_ids(pg_pool), lambda ids: old_inbox not in ids, what="inbox pruned"
        )
        await eventually(
            lambda: outbox_ids(pg_pool), lambda ids: old_sent not in ids, what="outbox pruned"
        )

    assert await inbox_ids(pg_pool) == {recent_inbox}
    assert await outbox_ids(pg_pool) == {recent_sent, unsent}


async def test_housekeeping_runs_again_after_a_failed_pass(
    pg_pool: asyncpg.Pool, pg_dsn: str, kafka_bootstrap: str
) -> None:
    runtime = bare(pg_dsn, kafka_bootstrap, housekeeping=Housekeeping(every_seconds=0.05))
    with capture_logs() as logs:
        async with runtime.running():
            await pg_pool.execute("ALTER TABLE inbox RENAME TO inbox_parked")
            await eventually(
                lambda: [e for e in logs if e["event"] == "housekeeping failed"],
                bool,
                what="a failed pass logged",
            )
            await pg_pool.execute("ALTER TABLE inbox_parked RENAME TO inbox")
            old = await add_inbox(pg_pool, 30)
            await eventually(lambda: inbox_ids(pg_pool), lambda ids: old not in ids, what="pruned")


class Flaky:
    """A background worker whose loop dies on demand."""

    def __init__(self) -> None:
        self.wake, self.dying = asyncio.Event(), False
        self.task: asyncio.Task[Any] | None = None

    def die(self) -> None:
        self.dying = True
        self.wake.set()

    async def run(self) -> None:
        self.task = asyncio.current_task()
        await self.wake.wait()
        if self.dying:
            raise RuntimeError("worker died")

    async def stop(self) -> None:
        self.wake.set()

    def is_alive(self) -> bool:
        return self.task is not None and not self.task.done()


async def noop(envelope: Envelope, message: Any, uow: PostgresUnitOfWork) -> None:
    return None


@pytest.fixture
async def topic(new_topic: TopicFactory, kafka_bootstrap: str) -> AsyncIterator[str]:
    name = await new_topic("runtime")
    try:
        yield name
    finally:
        await delete_topics(kafka_bootstrap, [dead_letter_topic(name)])


def task_names() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks()}


async def test_readiness_follows_every_part_and_stop_leaves_nothing_running(
    pg_dsn: str, kafka_bootstrap: str, topic: str
) -> None:
    flaky = Flaky()
    runtime = bare(
        pg_dsn,
        kafka_bootstrap,
        with_relay=True,
        make_consumer=lambda pool: ConsumerRunner(
            name=unique("runtime"),
            bootstrap_servers=kafka_bootstrap,
            subscriptions=[Subscription(topic, OrderConfirmed, noop)],
            uow_factory=lambda: PostgresUnitOfWork(pool),
        ),
        make_workers={"flaky": lambda pool: flaky},
    )
    ready, live = HealthChecks(), HealthChecks()
    runtime.add_health_checks(ready, live)
    app = FastAPI(lifespan=lifespan(runtime))
    app.include_router(health_router(ready, live=live))

    async def probe(client: httpx.AsyncClient, path: str) -> tuple[int, list[str]]:
        response = await client.get(path)
        return response.status_code, response.json().get("failing", [])

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rt") as client:
            assert await app.state.pool.fetchval("SELECT 1") == 1
            ok = await eventually(lambda: probe(client, "/health/ready"), lambda r: r[0] == 200)
            assert ok == (200, [])
            body = (await client.get("/health/ready")).json()
            assert set(body["checks"]) == {
                "postgres",
                "kafka",
                "relay",
                "outbox_parked",
                "consumer",
                "flaky",
            }
            assert set((await client.get("/health/live")).json()["checks"]) == {"consumer"}

            flaky.die()
            assert await eventually(
                lambda: probe(client, "/health/ready"), lambda r: r[0] == 503
            ) == (503, ["flaky"])
            assert await probe(client, "/health/live") == (200, [])

            assert runtime.relay is not None
            await runtime.relay.stop()
            assert await probe(client, "/health/ready") == (503, ["relay", "flaky"])
        running = {n for n in task_names() if n.startswith(runtime.name)}
        assert running == {f"{runtime.name}.{p}" for p in ("housekeeping", "consumer")}
    # the dead worker did not keep the others from stopping
    assert not any(n.startswith(runtime.name) for n in task_names())
    assert runtime.consumer is not None
    assert not runtime.consumer.is_alive()
    with pytest.raises(RuntimeError, match="not running"):
        _ = runtime.pool


class Recording:
    """A consumer or worker that notes, when stopped, whether the relay and pool were still up."""

    def __init__(self, name: str, log: list[str], relay: list[Any], pool: asyncpg.Pool) -> None:
        self.name, self._log, self._relay, self._pool = name, log, relay, pool
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._log.append(f"{self.name} started")

    async def run(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        relay = "relay up" if self._relay[0].is_alive() else "relay down"
        pool = "pool closed" if self._pool.is_closing() else "pool open"
        self._log.append(f"{self.name} stopped, {relay}, {pool}")
        self._stopping.set()

    def is_alive(self) -> bool:
        return not self._stopping.is_set()


async def test_stop_order_consumer_then_workers_then_relay_then_pool(
    pg_dsn: str, kafka_bootstrap: str
) -> None:
    log: list[str] = []
    relay: list[Any] = []
    pools: list[asyncpg.Pool] = []

    def recording(name: str) -> Callable[[asyncpg.Pool], Recording]:
        def make(pool: asyncpg.Pool) -> Recording:
            pools.append(pool)
            return Recording(name, log, relay, pool)

        return make

    runtime = bare(
        pg_dsn,
        kafka_bootstrap,
        with_relay=True,
        make_consumer=recording("consumer"),
        make_workers={"worker": recording("worker")},
    )
    await runtime.start()
    relay.append(runtime.relay)
    assert log == ["consumer started"]
    await eventually(lambda: relay[0].is_alive(), bool, what="relay alive")
    await runtime.stop()
    assert log == [
        "consumer started",
        "consumer stopped, relay up, pool open",
        "worker stopped, relay up, pool open",
    ]
    assert not relay[0].is_alive()
    assert pools[0].is_closing()


async def test_a_failed_start_closes_the_pool_and_can_start_again(
    pg_dsn: str, kafka_bootstrap: str
) -> None:
    seen: list[asyncpg.Pool] = []

    async def prepare(pool: asyncpg.Pool) -> None:
        seen.append(pool)
        if len(seen) == 1:
            raise RuntimeError("seed failed")

    runtime = bare(pg_dsn, kafka_bootstrap, prepare=prepare)
    with pytest.raises(RuntimeError, match="seed failed"):
        await runtime.start()
    assert seen[0].is_closing()
    assert not any(n.startswith(runtime.name) for n in task_names())
    async with runtime.running() as pool:
        assert await pool.fetchval("SELECT count(*) FROM inbox") == 0
