"""The composition root: the only place that builds the pool, the saga view writer, the faust
processor and the app."""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI

from services.orchestrator import api
from services.orchestrator.datadir import DataDirLock
from services.orchestrator.processor import Processor
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.store import SCHEMA
from services.orchestrator.view import ViewWriter
from shared.auth import AuthSettings, add_auth_check, make_bearer_dependency
from shared.http.health import HealthChecks
from shared.runtime import ServiceRuntime, service_app


def runtime(settings: OrchestratorSettings) -> ServiceRuntime:
    """Workers start in order and stop in reverse: the processor stops before the view writer,
    which then writes what the processor last handed it. The data directory's lock comes first
    and goes last: no other worker may open the table's files while this one might."""
    views: list[ViewWriter] = []

    def view(pool: asyncpg.Pool) -> ViewWriter:
        views.append(ViewWriter(pool))
        return views[-1]

    def processor(pool: asyncpg.Pool) -> Processor:
        return Processor(settings, views[-1])

    return ServiceRuntime(
        name=settings.service_name,
        database_url=settings.database_url,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        kafka_security=settings.kafka_security,
        schema=SCHEMA,
        with_relay=False,  # it writes no outbox: commands go out from the stream processor
        make_workers={
            "data_dir": lambda _: DataDirLock(settings),
            "view": view,
            "processor": processor,
        },
        details={"app_id": settings.faust_id, "store": settings.store},
    )


def create_app(settings: OrchestratorSettings, auth: AuthSettings) -> FastAPI:
    running = runtime(settings)
    ready, live = HealthChecks(), HealthChecks()
    add_auth_check(auth, ready)

    def processor() -> Processor | None:
        found = running.workers.get("processor")
        return found if isinstance(found, Processor) else None

    # ready once the saga table is recovered; alive while it makes progress on its partitions
    ready.add("saga_table", lambda: (p := processor()) is not None and p.ready())
    live.add("saga_processor", lambda: (p := processor()) is None or p.is_alive())
    return service_app(
        running,
        api.router(make_bearer_dependency(auth)),
        title="Leadline orchestrator",
        version="1",
        summary="The order saga: inspection for operators.",
        max_body_bytes=settings.max_body_bytes,
        ready=ready,
        live=live,
    )
