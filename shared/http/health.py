"""Liveness, readiness and metrics routes every service mounts (DESIGN §9).

Liveness answers "restart me?": the process serves HTTP, so its event loop is responsive, and
any checks registered as liveness checks pass (a consumer loop that died or stopped polling).
Readiness answers "send me work?": every dependency check passes. Each check runs under its own
timeout, so a hung dependency turns readiness red instead of hanging the probe.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import asyncpg
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, ConfigDict, Field

from shared.kafka.security import PLAINTEXT, KafkaSecurity

CheckResult = bool | str | None
Check = Callable[[], CheckResult | Awaitable[CheckResult]]
"""Passes when it returns True, None or a note (a string: passing, but worth an operator's
attention); fails when it returns False, raises or times out."""


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    ok: bool
    error: str | None = None
    note: str | None = None


class HealthChecks:
    """Named checks run concurrently, each bounded by its timeout. Sync checks run inline on
    the event loop, so they must be cheap (`runner.is_alive()`); anything doing I/O is async."""

    def __init__(self, *, timeout: float = 2.0) -> None:
        self._timeout = timeout
        self._checks: dict[str, tuple[Check, float]] = {}
        self._notes: dict[str, str] = {}
        # a timed-out check that swallows its cancellation keeps running; hold it so it is not
        # garbage-collected mid-flight
        self._abandoned: set[asyncio.Task[CheckResult]] = set()

    def add(
        self, name: str, check: Check, *, timeout: float | None = None, note: str | None = None
    ) -> None:
        """`note` is reported beside the check's result, passing or not: something an operator
        should see even when everything works (e.g. a development-only setting in use)."""
        if name in self._checks:
            raise ValueError(f"health check {name!r} already added")
        self._checks[name] = (check, self._timeout if timeout is None else timeout)
        if note is not None:
            self._notes[name] = note

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._checks)

    async def run(self) -> list[CheckOutcome]:
        outcomes = await asyncio.gather(
            *(self._run_one(name, check, t) for name, (check, t) in self._checks.items())
        )
        return [o if o.note else replace(o, note=self._notes.get(o.name)) for o in outcomes]

    async def _run_one(self, name: str, check: Check, timeout: float) -> CheckOutcome:
        task = asyncio.ensure_future(_call(check))
        # asyncio.wait, not wait_for: it returns at the deadline even if the check ignores
        # cancellation, so the probe's own latency stays bounded
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._forget)
            return CheckOutcome(name, ok=False, error=f"timed out after {timeout:g}s")
        if task.cancelled():
            return CheckOutcome(name, ok=False, error="cancelled")
        error = task.exception()
        if error is not None:
            return CheckOutcome(name, ok=False, error=f"{type(error).__name__}: {error}")
        result = task.result()
        if result is False:
            return CheckOutcome(name, ok=False, error="check returned False")
        return CheckOutcome(name, ok=True, note=result if isinstance(result, str) else None)

    def _forget(self, task: asyncio.Task[CheckResult]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log "exception never retrieved"


async def _call(check: Check) -> CheckResult:
    result = check()
    if inspect.isawaitable(result):
        return await result
    return result


class CheckStatus(BaseModel):
    ok: bool
    error: str | None = Field(default=None, description="why the check failed")
    note: str | None = Field(
        default=None, description="what an operator should know, even when the check passes"
    )


class HealthReport(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckStatus] | None = Field(default=None, description="every check's result")
    failing: list[str] | None = Field(default=None, description="names of the failing checks")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "unavailable",
                    "checks": {"postgres": {"ok": True}, "kafka": {"ok": False, "error": "..."}},
                    "failing": ["kafka"],
                }
            ]
        }
    )


async def _report(checks: HealthChecks) -> JSONResponse:
    outcomes = await checks.run()
    failing = [o.name for o in outcomes if not o.ok]
    report = HealthReport(
        status="unavailable" if failing else "ok",
        checks={o.name: CheckStatus(ok=o.ok, error=o.error, note=o.note) for o in outcomes} or None,
        failing=failing or None,
    )
    return JSONResponse(
        report.model_dump(mode="json", exclude_none=True), status_code=503 if failing else 200
    )


def health_router(
    checks: HealthChecks,
    *,
    live: HealthChecks | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> APIRouter:
    """`GET /health/live`, `GET /health/ready` and `GET /metrics`. `checks` gate readiness;
    `live` (optional) holds the checks whose failure means the process should be restarted."""
    router = APIRouter(tags=["health"])
    live_checks = live or HealthChecks()
    unavailable: dict[int | str, dict[str, Any]] = {
        503: {"model": HealthReport, "description": "a check failed; `failing` names it"}
    }

    @router.get(
        "/health/live", summary="Liveness", response_model=HealthReport, responses=unavailable
    )
    async def liveness() -> JSONResponse:
        """200 while the process serves requests (its event loop is responsive) and its
        liveness checks pass; 503 means restart it."""
        return await _report(live_checks)

    @router.get(
        "/health/ready", summary="Readiness", response_model=HealthReport, responses=unavailable
    )
    async def readiness() -> JSONResponse:
        """200 when every dependency check passes; 503 naming the failing checks and why."""
        return await _report(checks)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    def metrics(request: Request) -> Response:
        """The process's metrics in Prometheus text format (OpenMetrics when the scraper asks
        for it in `Accept`)."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(content=encode(registry), media_type=content_type)

    return router


def postgres_check(pool: asyncpg.Pool) -> Callable[[], Awaitable[None]]:
    """A round trip through the pool. An exhausted pool waits, and so fails on the timeout."""

    async def check() -> None:
        await pool.fetchval("SELECT 1")

    return check


class KafkaCheck:
    """A broker round trip: a metadata request naming no topics over one cached client, so each
    probe costs one small request, not a new connection. `close()` it on shutdown."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        request_timeout_ms: int = 2000,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._security = security
        self._request_timeout_ms = request_timeout_ms
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        client = await self._connected()
        node = client.get_random_node()
        if node is None:
            raise ConnectionError("no Kafka broker known")
        await client.send(node, MetadataRequest([]))

    async def _connected(self) -> Any:
        # one client even when probes overlap; a failed bootstrap is retried on the next probe
        async with self._lock:
            if self._client is None:
                client = AIOKafkaClient(
                    bootstrap_servers=self._bootstrap_servers,
                    request_timeout_ms=self._request_timeout_ms,
                    client_id="leadline-health",
                    **self._security.aiokafka(),
                )
                try:
                    await client.bootstrap()
                except BaseException:
                    await client.close()
                    raise
                self._client = client
            return self._client

    async def close(self) -> None:
        async with self._lock:
            if self._client is not None:
                await self._client.close()
                self._client = None


def kafka_check(bootstrap_servers: str) -> KafkaCheck:
    return KafkaCheck(bootstrap_servers)
