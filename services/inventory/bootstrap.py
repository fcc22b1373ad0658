"""The composition root: the only place that builds the pool, relay, runner and app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import asyncpg
from fastapi import FastAPI

from services.inventory import api
from services.inventory.consumers import Topics, subscriptions
from services.inventory.seed import SEED_STOCK, seed_stock
from services.inventory.settings import InventorySettings
from services.inventory.store import SCHEMA, PostgresInventoryUnitOfWork
from shared.http.health import HealthChecks, KafkaCheck, health_router, postgres_check
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings
from shared.observability.logging import get_logger
from shared.postgres import create_pool, install_schema
from shared.relay import OutboxRelay

log = get_logger(__name__)


@dataclass
class Running:
    pool: asyncpg.Pool
    relay: OutboxRelay
    runner: ConsumerRunner[PostgresInventoryUnitOfWork]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        # Consumer first: what it commits from now on still reaches the outbox and the relay.
        await self.runner.stop()
        await self.relay.stop()
        for task in self.tasks:
            with suppress(Exception):
                await task
        await self.pool.close()


async def start(settings: InventorySettings) -> Running:
    topics = Topics.with_prefix(settings.topic_prefix)
    pool = await create_pool(settings.database_url)
    await install_schema(pool, SCHEMA)
    if settings.seed_stock:
        seeded = await seed_stock(pool, SEED_STOCK, topics.events)
        log.info("stock seeded", skus=seeded)
    relay = OutboxRelay(
        pool=pool, bootstrap_servers=settings.kafka_bootstrap_servers, name=settings.service_name
    )
    runner = ConsumerRunner(
        name=settings.consumer_group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        subscriptions=subscriptions(topics),
        uow_factory=lambda: PostgresInventoryUnitOfWork(pool),
        settings=ConsumerSettings(group_instance_id=settings.instance_id),
    )
    running = Running(pool, relay, runner)
    running.tasks.append(asyncio.create_task(relay.run(), name="relay"))
    await runner.start()
    running.tasks.append(asyncio.create_task(runner.run(), name="consumer"))
    log.info("inventory started", topics=topics)
    return running


def create_app(settings: InventorySettings) -> FastAPI:
    holder: dict[str, Running] = {}
    kafka = KafkaCheck(settings.kafka_bootstrap_servers)

    async def postgres() -> None:
        await postgres_check(holder["running"].pool)()

    ready, live = HealthChecks(), HealthChecks()
    ready.add("postgres", postgres)
    ready.add("kafka", kafka)
    ready.add("relay", lambda: "running" in holder and holder["running"].relay.is_alive())
    ready.add("consumer", lambda: "running" in holder and holder["running"].runner.is_alive())
    live.add("consumer", lambda: "running" in holder and holder["running"].runner.is_alive())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = await start(settings)
        holder["running"] = running
        app.state.pool = running.pool
        try:
            yield
        finally:
            await running.stop()
            await kafka.close()

    app = FastAPI(title="Leadline inventory", version="1", lifespan=lifespan)
    app.include_router(api.router)
    app.include_router(health_router(ready, live=live))
    return app
