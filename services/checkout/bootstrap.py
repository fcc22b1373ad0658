"""The composition root: the only place that builds the pool, relay, consumer runner and app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from services.checkout.api import Buses, install_error_handlers, orders_router
from services.checkout.catalogue import SEED
from services.checkout.consumers import subscriptions
from services.checkout.handlers import CancelOrder, GetOrder, OrderHandlers, PlaceOrder
from services.checkout.middleware import BodySizeLimit, RequestMetrics
from services.checkout.settings import CheckoutSettings
from services.checkout.store import SCHEMA, PostgresCheckoutUnitOfWork, seed_products
from shared.auth import AuthSettings, make_bearer_dependency
from shared.buses import CommandBus, QueryBus
from shared.http.health import HealthChecks, KafkaCheck, health_router, postgres_check
from shared.kafka.consumer import ConsumerRunner
from shared.observability.logging import get_logger
from shared.postgres import create_pool, install_schema
from shared.relay import OutboxRelay

log = get_logger(__name__)


def _background(
    stack: AsyncExitStack,
    run: Callable[[], Coroutine[Any, Any, None]],
    stop: Callable[[], Awaitable[None]],
) -> None:
    task = asyncio.create_task(run())

    async def stopped() -> None:
        await stop()
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("background task had died", exc_info=task.exception())

    stack.push_async_callback(stopped)


def create_app(
    settings: CheckoutSettings | None = None, auth: AuthSettings | None = None
) -> FastAPI:
    settings = settings or CheckoutSettings()
    auth = auth or AuthSettings()
    ready, live = HealthChecks(), HealthChecks()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if auth.uses_dev_secret:
            log.warning("using the local development JWT secret; set AUTH_JWT_SECRET")
        # Shutdown runs in reverse: consumer, then relay, then the pool they both use.
        async with AsyncExitStack() as stack:
            pool = await create_pool(settings.database_url, max_size=settings.pool_max_size)
            stack.push_async_callback(pool.close)
            await install_schema(pool, SCHEMA)
            await seed_products(pool, SEED)

            def uow() -> PostgresCheckoutUnitOfWork:
                return PostgresCheckoutUnitOfWork(pool)

            app.state.buses = _buses(
                OrderHandlers(uow, events_topic=settings.topic("checkout.events"))
            )
            kafka = KafkaCheck(settings.kafka_bootstrap_servers)
            stack.push_async_callback(kafka.close)
            ready.add("postgres", postgres_check(pool))
            ready.add("kafka", kafka)
            if settings.run_relay:
                relay = OutboxRelay(
                    pool=pool, bootstrap_servers=settings.kafka_bootstrap_servers, name="checkout"
                )
                _background(stack, relay.run, relay.stop)
                ready.add("relay", relay.is_alive)
            if settings.run_consumer:
                runner = ConsumerRunner(
                    name=settings.consumer_group,
                    bootstrap_servers=settings.kafka_bootstrap_servers,
                    subscriptions=subscriptions(settings),
                    uow_factory=uow,
                )
                await runner.start()
                _background(stack, runner.run, runner.stop)
                ready.add("consumer", runner.is_alive)
                live.add("consumer", runner.is_alive)
            log.info("checkout started", topic_prefix=settings.topic_prefix)
            yield

    app = FastAPI(
        title="Leadline checkout",
        version="1.0.0",
        summary="Place, read and cancel orders.",
        description="Bearer JWT on every `/orders` route: the token's subject is the customer."
        " Prices and totals are computed server-side.",
        lifespan=lifespan,
    )
    app.include_router(orders_router(make_bearer_dependency(auth)))
    app.include_router(health_router(ready, live=live))
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, service=settings.service_name)
    return app


def _buses(handlers: OrderHandlers) -> Buses:
    commands, queries = CommandBus(), QueryBus()
    commands.register(PlaceOrder, handlers.place)
    commands.register(CancelOrder, handlers.cancel)
    queries.register(GetOrder, handlers.get)
    return Buses(commands, queries)
