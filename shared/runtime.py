"""One service process's lifecycle: pool, schema, outbox relay, consumer runner, background
workers and housekeeping started in order, stopped in reverse, and wired into health checks."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

import asyncpg
import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError

from shared.http.health import HealthChecks, KafkaCheck, health_router, postgres_check
from shared.http.middleware import HTTP_TRACING, BodySizeLimit, RequestMetrics
from shared.http.outages import install_outage_handler
from shared.kafka.security import PLAINTEXT, KafkaSecurity
from shared.observability.logging import get_logger
from shared.observability.tracing import flush_traces, recording
from shared.postgres import create_pool, install_schema
from shared.postgres.inbox import prune_inbox
from shared.postgres.outbox import prune_outbox
from shared.relay import OutboxRelay

log = get_logger(__name__)


class Worker(Protocol):
    async def run(self) -> None: ...  # until stop()
    async def stop(self) -> None: ...
    def is_alive(self) -> bool: ...


class Consumer(Worker, Protocol):
    async def start(self) -> None: ...


@dataclass(frozen=True)
class Housekeeping:
    """Inbox rows must outlive the topics' retention (Kafka's default is 7 days), or a redelivered
    old event finds no inbox row and is applied again. Sent outbox rows are kept for inspection
    only; unsent ones are never pruned. Every instance prunes: the deletes are idempotent."""

    every_seconds: float = 3600.0
    inbox_retention_days: int = 14
    outbox_retention_days: int = 7
    inbox_tables: tuple[str, ...] = ("inbox",)
    outbox: bool = True  # False for a service that publishes nothing

    async def prune(self, pool: asyncpg.Pool) -> tuple[int, int]:
        """One pass; returns (inbox rows, outbox rows) deleted."""
        inbox = 0
        for table in self.inbox_tables:
            inbox += await prune_inbox(pool, self.inbox_retention_days, table)
        if not self.outbox:
            return inbox, 0
        return inbox, await prune_outbox(pool, timedelta(days=self.outbox_retention_days))

    async def run(self, pool: asyncpg.Pool, stopping: asyncio.Event) -> None:
        """Prune at once (a process restarted more often than `every_seconds` still prunes),
        then every `every_seconds` until `stopping`. A failed pass is logged, never fatal."""
        while not stopping.is_set():
            try:
                inbox, outbox = await self.prune(pool)
                log.info("housekeeping pruned", inbox=inbox, outbox=outbox)
            except Exception as exc:
                log.warning("housekeeping failed", error=repr(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.every_seconds)


@dataclass(kw_only=True, eq=False)
class ServiceRuntime:
    """Starts: pool → schema → `prepare` (seeds) → housekeeping → relay → `workers` → consumer.
    Stops in reverse, so everything that writes to the outbox (the consumer, then the workers)
    has stopped before the relay publishes its last batch, and the pool closes last. Factories
    get the pool; `details` go into the "service started" log line."""

    name: str
    database_url: str
    bootstrap_servers: str
    kafka_security: KafkaSecurity = PLAINTEXT
    schema: str = ""
    pool_max_size: int = 10
    prepare: Callable[[asyncpg.Pool], Awaitable[object]] | None = None
    with_relay: bool = True
    make_consumer: Callable[[asyncpg.Pool], Consumer] | None = None
    make_workers: Mapping[str, Callable[[asyncpg.Pool], Worker]] = field(default_factory=dict)
    housekeeping: Housekeeping | None = Housekeeping()
    details: Mapping[str, object] = field(default_factory=dict)

    relay: OutboxRelay | None = field(default=None, init=False)
    consumer: Consumer | None = field(default=None, init=False)
    workers: dict[str, Worker] = field(default_factory=dict, init=False)
    _pool: asyncpg.Pool | None = field(default=None, init=False)
    _stack: AsyncExitStack | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.kafka = KafkaCheck(self.bootstrap_servers, security=self.kafka_security)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._pool

    async def start(self) -> None:
        """On failure, whatever had started is stopped again before the error propagates."""
        if self._stack is not None:
            raise RuntimeError(f"{self.name} is already running")
        async with AsyncExitStack() as stack:
            pool = await create_pool(self.database_url, max_size=self.pool_max_size)
            stack.push_async_callback(pool.close)
            await install_schema(pool, self.schema)
            if self.prepare is not None:
                await self.prepare(pool)
            if self.housekeeping is not None:
                stopping = asyncio.Event()
                self._background(stack, "housekeeping", self.housekeeping.run(pool, stopping))
                stack.callback(stopping.set)
            if self.with_relay:
                self.relay = OutboxRelay(
                    pool=pool,
                    bootstrap_servers=self.bootstrap_servers,
                    name=self.name,
                    security=self.kafka_security,
                )
                self._run(stack, "relay", self.relay)
            for name, make in self.make_workers.items():
                self.workers[name] = make(pool)
                self._run(stack, name, self.workers[name])
            if self.make_consumer is not None:
                self.consumer = self.make_consumer(pool)
                await self.consumer.start()
                self._run(stack, "consumer", self.consumer)
            self._pool, self._stack = pool, stack.pop_all()
        log.info("service started", service=self.name, **self.details)

    async def stop(self) -> None:
        stack, self._stack, self._pool = self._stack, None, None
        try:
            if stack is not None:
                await stack.aclose()
        finally:
            await self.kafka.close()
            if recording():  # the last spans out before a process manager may kill us
                await asyncio.to_thread(flush_traces)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[asyncpg.Pool]:
        await self.start()
        try:
            yield self.pool
        finally:
            await self.stop()

    def add_health_checks(self, ready: HealthChecks, live: HealthChecks) -> None:
        """Readiness: postgres, kafka and every part this runtime runs; parked outbox rows (one
        Kafka refused for good stops its key's messages until an operator retries or drops it)
        are a note on a passing check, saying how. Liveness: the consumer (a dead or stuck loop
        needs a restart; the others recover or are restarted with it)."""
        ready.add("postgres", lambda: postgres_check(self.pool)())
        ready.add("kafka", self.kafka)
        if self.with_relay:
            ready.add("relay", lambda: self.relay is not None and self.relay.is_alive())
            ready.add("outbox_parked", lambda: self.relay.check_parked() if self.relay else None)
        if self.make_consumer is not None:
            ready.add("consumer", self._consumer_alive)
            live.add("consumer", self._consumer_alive)
        for name in self.make_workers:
            ready.add(name, partial(self._worker_alive, name))

    def _consumer_alive(self) -> bool:
        return self.consumer is not None and self.consumer.is_alive()

    def _worker_alive(self, name: str) -> bool:
        return name in self.workers and self.workers[name].is_alive()

    def _background(self, stack: AsyncExitStack, name: str, run: Coroutine[Any, Any, None]) -> None:
        """Awaits the task when the stack unwinds; the caller pushes what makes it return."""
        task = asyncio.create_task(run, name=f"{self.name}.{name}")

        def died(done: asyncio.Task[None]) -> None:
            # said at once, not only at shutdown: health turns red, the log says why
            if not done.cancelled() and done.exception() is not None:
                log.error("background task died", task=name, exc_info=done.exception())

        task.add_done_callback(died)

        async def ended() -> None:
            await asyncio.wait({task})

        stack.push_async_callback(ended)

    def _run(self, stack: AsyncExitStack, name: str, worker: Worker) -> None:
        self._background(stack, name, worker.run())
        stack.push_async_callback(worker.stop)


OnStart = Callable[[FastAPI, asyncpg.Pool], None]
"""Builds what a service's routes need from the running pool (e.g. its buses) into `app.state`."""


def lifespan(
    runtime: ServiceRuntime, on_start: OnStart | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that runs `runtime` while the app serves, its pool in `app.state.pool`;
    `on_start` runs once the runtime has started, before the first request is served."""

    @asynccontextmanager
    async def span(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.running() as pool:
            app.state.pool = pool
            if on_start is not None:
                on_start(app, pool)
            yield

    return span


def service_app(
    runtime: ServiceRuntime,
    *routers: APIRouter,
    title: str,
    version: str,
    max_body_bytes: int,
    on_start: OnStart | None = None,
    ready: HealthChecks | None = None,
    live: HealthChecks | None = None,
    summary: str | None = None,
    description: str = "",
) -> FastAPI:
    """One service's app: `runtime` as the lifespan, the service's `routers`, then health,
    readiness and liveness (the runtime's checks after any already in `ready` and `live`) and
    metrics routes, request metrics labelled with the runtime's name, the body-size limit, and
    503 + Retry-After for a request that met an outage (the database restarting) instead of a
    500. Request metrics sit outermost, so the 413s and 400s the limit answers are counted too.
    Requests are traced by FastAPI itself when the process traces (`HTTP_TRACING`)."""
    ready = HealthChecks() if ready is None else ready
    live = HealthChecks() if live is None else live
    runtime.add_health_checks(ready, live)
    app = FastAPI(
        title=title,
        version=version,
        summary=summary,
        description=description,
        lifespan=lifespan(runtime, on_start),
        telemetry=HTTP_TRACING,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(health_router(ready, live=live))
    install_outage_handler(app)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(RequestMetrics, service=runtime.name)
    return app


T = TypeVar("T")


def configured(service: str, build: Callable[[], T]) -> T:
    """`build()` (settings, an app reading its settings); settings the environment got wrong
    end the process with one line naming each refused setting and exit status 2, not a
    traceback an operator has to read from the bottom up."""
    try:
        return build()
    except ValidationError as exc:
        refused = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        print(f"{service}: refusing to start: {refused}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """uvicorn in the foreground; SIGTERM runs the lifespan's shutdown (10 s grace for requests)."""
    # log_config=None keeps uvicorn's own lines in our JSON stream
    uvicorn.run(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=10)
