"""The composition root: the only place that builds the pool, relay, runner, delivery loop
and app."""

from __future__ import annotations

from email.headerregistry import Address

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
from shared.auth import AuthSettings, add_auth_check, make_bearer_dependency
from shared.http.health import HealthChecks
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings
from shared.runtime import ServiceRuntime, service_app

Running = ServiceRuntime  # what `start()` returns, by the name tests know it


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


def runtime(settings: ReceiptsSettings) -> ServiceRuntime:
    issuing = Issuing(
        issuer=settings.issuer,
        tax_rate=settings.tax_rate,
        out=settings.topic("receipts.events"),
    )
    mail = channel(settings)

    def consumer(pool: asyncpg.Pool) -> ConsumerRunner[PostgresReceiptsUnitOfWork]:
        return ConsumerRunner(
            name=settings.consumer_group,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security=settings.kafka_security,
            subscriptions=subscriptions(
                settings.topic("checkout.events"), settings.topic("receipts.commands"), issuing
            ),
            uow_factory=lambda: PostgresReceiptsUnitOfWork(pool),
            settings=ConsumerSettings(
                group_instance_id=settings.instance_id,
                replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas,
            ),
        )

    def delivery(pool: asyncpg.Pool) -> DeliveryLoop:
        domain = settings.customer_mail_domain
        return DeliveryLoop(
            pool=pool,
            channel=mail,
            # Address quotes the local part: a customer id like "a:b" unquoted is a group
            # holding b@domain, and the receipt would go to another customer.
            compose=lambda r: compose(
                r,
                sender=settings.mail_from,
                recipient=str(Address(username=r.customer_id, domain=domain)),
            ),
            poll_interval=settings.delivery_poll_seconds,
            backoff_initial=settings.delivery_backoff_initial,
            backoff_max=settings.delivery_backoff_max,
        )

    return ServiceRuntime(
        name=settings.service_name,
        database_url=settings.database_url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        kafka_security=settings.kafka_security,
        schema=SCHEMA,
        make_consumer=consumer,
        make_workers={"delivery": delivery},
        details={"channel": mail.name, "issuer": settings.issuer},
    )


async def start(settings: ReceiptsSettings) -> Running:
    running = runtime(settings)
    await running.start()
    return running


def create_app(settings: ReceiptsSettings, auth: AuthSettings) -> FastAPI:
    ready = HealthChecks()
    add_auth_check(auth, ready)
    return service_app(
        runtime(settings),
        api.router(make_bearer_dependency(auth)),
        title="Leadline receipts",
        version="1",
        max_body_bytes=settings.max_body_bytes,
        ready=ready,
    )
