"""The composition root: the only place that builds the pool, relay, runner, delivery loop
and app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial

import asyncpg
from fastapi import FastAPI

from services.receipts import api
from services.receipts.channels import Channel, MailboxChannel, SmtpChannel
from services.receipts.consumers import subscriptions
from services.receipts.delivery import DeliveryLoop
from services.receipts.handlers import Issuing
from services.receipts.render import compose
from services.receipts.settings import ReceiptsSettings
from services.receipts.store import SCHEMA, PostgresReceiptsUnitOfWork
from shared.auth import AuthSettings, make_bearer_dependency
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
    runner: ConsumerRunner[PostgresReceiptsUnitOfWork]
    delivery: DeliveryLoop
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        await self.runner.stop()
        await self.delivery.stop()
        await self.relay.stop()
        for task in self.tasks:
            with suppress(Exception):
                await task
        await self.pool.close()


def channel(settings: ReceiptsSettings) -> Channel:
    if settings.smtp_host:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return SmtpChannel(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            starttls=settings.smtp_starttls,
        )
    return MailboxChannel(settings.mailbox_dir)


async def start(settings: ReceiptsSettings) -> Running:
    pool = await create_pool(settings.database_url)
    await install_schema(pool, SCHEMA)
    relay = OutboxRelay(
        pool=pool, bootstrap_servers=settings.kafka_bootstrap_servers, name=settings.service_name
    )
    issuing = Issuing(
        issuer=settings.issuer,
        tax_rate=settings.tax_rate,
        out=settings.topic("receipts.events"),
    )
    runner = ConsumerRunner(
        name=settings.consumer_group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        subscriptions=subscriptions(settings.topic("checkout.events"), issuing),
        uow_factory=lambda: PostgresReceiptsUnitOfWork(pool),
        settings=ConsumerSettings(group_instance_id=settings.instance_id),
    )
    domain = settings.customer_mail_domain
    delivery = DeliveryLoop(
        pool=pool,
        channel=channel(settings),
        compose=lambda r: compose(
            r, sender=settings.mail_from, recipient=f"{r.customer_id}@{domain}"
        ),
        poll_interval=settings.delivery_poll_seconds,
        backoff_initial=settings.delivery_backoff_initial,
        backoff_max=settings.delivery_backoff_max,
    )
    running = Running(pool, relay, runner, delivery)
    running.tasks.append(asyncio.create_task(relay.run(), name="relay"))
    running.tasks.append(asyncio.create_task(delivery.run(), name="delivery"))
    await runner.start()
    running.tasks.append(asyncio.create_task(runner.run(), name="consumer"))
    log.info("receipts started", channel=delivery.channel.name, issuer=settings.issuer)
    return running


def create_app(settings: ReceiptsSettings, auth: AuthSettings) -> FastAPI:
    if auth.uses_dev_secret:
        log.warning("bearer tokens use the local development secret; set AUTH_JWT_SECRET")
    holder: dict[str, Running] = {}
    kafka = KafkaCheck(settings.kafka_bootstrap_servers)

    async def postgres() -> None:
        await postgres_check(holder["running"].pool)()

    def alive(part: str) -> bool:
        running = holder.get("running")
        return running is not None and getattr(running, part).is_alive()

    ready, live = HealthChecks(), HealthChecks()
    ready.add("postgres", postgres)
    ready.add("kafka", kafka)
    for name, part in (("relay", "relay"), ("consumer", "runner"), ("delivery", "delivery")):
        ready.add(name, partial(alive, part))
    live.add("consumer", partial(alive, "runner"))

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

    app = FastAPI(title="Leadline receipts", version="1", lifespan=lifespan)
    app.include_router(api.router(make_bearer_dependency(auth)))
    app.include_router(health_router(ready, live=live))
    return app
