"""The composition root: the only place that builds the pool, relay, runner and app."""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI

from services.inventory import api
from services.inventory.consumers import Topics, subscriptions
from services.inventory.seed import SEED_STOCK, seed_stock
from services.inventory.settings import InventorySettings
from services.inventory.store import SCHEMA, PostgresInventoryUnitOfWork
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings
from shared.observability.logging import get_logger
from shared.runtime import ServiceRuntime, service_app

log = get_logger(__name__)

Running = ServiceRuntime  # what `start()` returns, by the name tests know it


def runtime(settings: InventorySettings) -> ServiceRuntime:
    topics = Topics.with_prefix(settings.topic_prefix)

    async def seed(pool: asyncpg.Pool) -> None:
        if settings.seed_stock:
            log.info("stock seeded", skus=await seed_stock(pool, SEED_STOCK, topics.events))

    def consumer(pool: asyncpg.Pool) -> ConsumerRunner[PostgresInventoryUnitOfWork]:
        return ConsumerRunner(
            name=settings.consumer_group,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security=settings.kafka_security,
            subscriptions=subscriptions(topics),
            uow_factory=lambda: PostgresInventoryUnitOfWork(pool),
            settings=ConsumerSettings(
                group_instance_id=settings.instance_id,
                replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas,
            ),
        )

    return ServiceRuntime(
        name=settings.service_name,
        database_url=settings.database_url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        kafka_security=settings.kafka_security,
        schema=SCHEMA,
        prepare=seed,
        make_consumer=consumer,
        details={"topics": topics},
    )


async def start(settings: InventorySettings) -> Running:
    running = runtime(settings)
    await running.start()
    return running


def create_app(settings: InventorySettings) -> FastAPI:
    return service_app(
        runtime(settings),
        api.router,
        title="Leadline inventory",
        version="1",
        max_body_bytes=settings.max_body_bytes,
    )
