"""The composition root: the only place that builds the pool, the view consumers and the app."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from fastapi import FastAPI

from services.projection import api
from services.projection.consumers import VIEWS, ViewConsumers, view_consumers
from services.projection.monitor import Monitor
from services.projection.settings import ProjectionSettings
from services.projection.store import SCHEMA
from shared.auth import AuthSettings, add_auth_check, make_bearer_dependency
from shared.http.asyncapi import asyncapi_router
from shared.http.health import CheckResult, HealthChecks
from shared.kafka.consumer import ConsumerSettings
from shared.runtime import Housekeeping, ServiceRuntime, service_app

Running = ServiceRuntime  # what `start()` returns, by the name tests know it


def runtime(settings: ProjectionSettings) -> ServiceRuntime:
    def consumers(pool: asyncpg.Pool) -> ViewConsumers:
        return view_consumers(
            pool,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security=settings.kafka_security,
            topic=settings.topic,
            group_prefix=settings.consumer_group,
            settings=ConsumerSettings(
                group_instance_id=settings.instance_id,
                transaction_batch=settings.transaction_batch,
                max_poll_records=settings.max_poll_records,
                replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas,
            ),
        )

    def monitor(pool: asyncpg.Pool) -> Monitor:
        # workers start before the consumer: the monitor finds the runners when it looks
        return Monitor(pool, lambda: _consumers(projection))

    projection = ServiceRuntime(
        name=settings.service_name,
        database_url=settings.database_url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        kafka_security=settings.kafka_security,
        schema=SCHEMA + "".join(view.ddl(view.schema) for view in VIEWS.values()),
        with_relay=False,  # the read side publishes nothing
        make_consumer=consumers,
        housekeeping=Housekeeping(
            inbox_tables=tuple(f"{v.schema}.inbox" for v in VIEWS.values()), outbox=False
        ),
        make_workers={"monitor": monitor},
        details={"views": sorted(VIEWS)},
    )
    return projection


def _consumers(running: ServiceRuntime) -> ViewConsumers | None:
    return running.consumer if isinstance(running.consumer, ViewConsumers) else None


def lag_check(running: ServiceRuntime, view: str, bound: int) -> Callable[[], CheckResult]:
    def check() -> CheckResult:
        consumers = _consumers(running)
        if consumers is None:
            return False
        lag = consumers.runners[view].lag()
        if lag is not None and lag > bound:
            raise RuntimeError(f"{lag} records behind (bound {bound})")
        return True

    return check


async def start(settings: ProjectionSettings) -> Running:
    running = runtime(settings)
    await running.start()
    return running


def create_app(settings: ProjectionSettings, auth: AuthSettings) -> FastAPI:
    running = runtime(settings)
    ready = HealthChecks()
    add_auth_check(auth, ready)
    for view in VIEWS:
        ready.add(f"lag_{view}", lag_check(running, view, settings.ready_max_lag))
    return service_app(
        running,
        api.router(make_bearer_dependency(auth), read_wait=settings.read_wait_seconds),
        asyncapi_router(),
        title="Leadline projection",
        version="1",
        max_body_bytes=settings.max_body_bytes,
        ready=ready,
    )
