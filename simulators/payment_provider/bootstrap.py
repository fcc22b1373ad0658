"""The composition root: the only place that builds the pool, runner, publisher and app."""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI

from shared.auth import AuthSettings, add_auth_check, make_bearer_dependency
from shared.http.health import HealthChecks
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings
from shared.runtime import ServiceRuntime, service_app
from simulators.payment_provider import api
from simulators.payment_provider.consumers import Topics, subscriptions
from simulators.payment_provider.domain import Controls
from simulators.payment_provider.publisher import AnswerPublisher
from simulators.payment_provider.settings import SimulatorSettings
from simulators.payment_provider.store import SCHEMA, PostgresSimulatorUnitOfWork


def runtime(settings: SimulatorSettings, controls: Controls) -> ServiceRuntime:
    topics = Topics.with_prefix(settings.topic_prefix)

    def consumer(pool: asyncpg.Pool) -> ConsumerRunner[PostgresSimulatorUnitOfWork]:
        return ConsumerRunner(
            name=settings.consumer_group,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security=settings.kafka_security,
            subscriptions=subscriptions(topics, controls),
            uow_factory=lambda: PostgresSimulatorUnitOfWork(pool),
            settings=ConsumerSettings(
                replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas,
            ),
        )

    def publisher(pool: asyncpg.Pool) -> AnswerPublisher:
        return AnswerPublisher(
            pool=pool,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security=settings.kafka_security,
            client_id=settings.service_name,
            partitioner=settings.partitioner,
            poll_interval=settings.publish_poll_ms / 1000,
        )

    # no relay: answers leave through the publisher's own client, never our outbox
    return ServiceRuntime(
        name=settings.service_name,
        database_url=settings.database_url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        kafka_security=settings.kafka_security,
        schema=SCHEMA,
        with_relay=False,
        make_consumer=consumer,
        make_workers={"publisher": publisher},
        details={"topics": topics, "knobs": controls.knobs, "partitioner": settings.partitioner},
    )


def create_app(settings: SimulatorSettings, auth: AuthSettings) -> FastAPI:
    controls = Controls(settings.knobs())
    ready = HealthChecks()
    add_auth_check(auth, ready)
    return service_app(
        runtime(settings, controls),
        api.router(make_bearer_dependency(auth), controls),
        title="Leadline payment-provider simulator",
        summary="A stand-in for the upstream payment provider: not a Leadline service",
        version="1",
        max_body_bytes=settings.max_body_bytes,
        ready=ready,
    )
