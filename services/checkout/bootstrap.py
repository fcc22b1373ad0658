"""The composition root: the only place that builds the pool, relay, consumer runner and app."""

from __future__ import annotations

from functools import partial

import asyncpg
from fastapi import FastAPI

from services.checkout.api import Buses, install_error_handlers, orders_router
from services.checkout.catalogue import SEED
from services.checkout.consumers import subscriptions
from services.checkout.handlers import CancelOrder, GetOrder, OrderHandlers, PlaceOrder
from services.checkout.ports import CheckoutUnitOfWork
from services.checkout.settings import CheckoutSettings
from services.checkout.store import SCHEMA, PostgresCheckoutUnitOfWork, seed_products
from shared.auth import AuthSettings, add_auth_check, make_bearer_dependency
from shared.buses import CommandBus, QueryBus
from shared.http.asyncapi import asyncapi_router
from shared.http.health import HealthChecks
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings
from shared.runtime import ServiceRuntime, service_app


def runtime(settings: CheckoutSettings) -> ServiceRuntime:
    def consumer(pool: asyncpg.Pool) -> ConsumerRunner[CheckoutUnitOfWork]:
        return ConsumerRunner(
            name=settings.consumer_group,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security=settings.kafka_security,
            subscriptions=subscriptions(settings),
            uow_factory=partial(PostgresCheckoutUnitOfWork, pool),
            settings=ConsumerSettings(
                replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas,
            ),
        )

    return ServiceRuntime(
        name="checkout",
        database_url=settings.database_url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        kafka_security=settings.kafka_security,
        schema=SCHEMA,
        pool_max_size=settings.pool_max_size,
        prepare=partial(seed_products, products=SEED),
        # Off only where the HTTP surface alone is exercised: readiness then skips them too.
        with_relay=settings.run_relay,
        make_consumer=consumer if settings.run_consumer else None,
        details={"topic_prefix": settings.topic_prefix},
    )


def create_app(
    settings: CheckoutSettings | None = None, auth: AuthSettings | None = None
) -> FastAPI:
    settings = settings or CheckoutSettings()
    auth = auth or AuthSettings()
    ready = HealthChecks()
    add_auth_check(auth, ready)

    def with_buses(app: FastAPI, pool: asyncpg.Pool) -> None:
        uow = partial(PostgresCheckoutUnitOfWork, pool)
        app.state.buses = _buses(OrderHandlers(uow, events_topic=settings.topic("checkout.events")))

    app = service_app(
        runtime(settings),
        orders_router(make_bearer_dependency(auth)),
        asyncapi_router(),
        title="Leadline checkout",
        version="1.0.0",
        summary="Place, read and cancel orders.",
        description="Bearer JWT on every `/orders` route: the token's subject is the customer."
        " Prices and totals are computed server-side.",
        max_body_bytes=settings.max_body_bytes,
        on_start=with_buses,
        ready=ready,
    )
    install_error_handlers(app)
    return app


def _buses(handlers: OrderHandlers) -> Buses:
    commands, queries = CommandBus(), QueryBus()
    commands.register(PlaceOrder, handlers.place)
    commands.register(CancelOrder, handlers.cancel)
    queries.register(GetOrder, handlers.get)
    return Buses(commands, queries)
