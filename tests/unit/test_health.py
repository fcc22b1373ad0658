"""Liveness, readiness and metrics routes, driven in-process through the ASGI app."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from shared.http.health import HealthChecks, health_router
from shared.observability.metrics import MESSAGES_HANDLED
from tests.support import unique


def app_with(checks: HealthChecks, live: HealthChecks | None = None) -> FastAPI:
    app = FastAPI()
    app.include_router(health_router(checks, live=live))
    return app


def client(checks: HealthChecks, live: HealthChecks | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app_with(checks, live))
    return httpx.AsyncClient(transport=transport, base_url="http://service")


async def test_liveness_is_ok_while_the_loop_serves() -> None:
    async with client(HealthChecks()) as http:
        response = await http.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_liveness_fails_when_a_liveness_check_fails() -> None:
    live = HealthChecks()
    live.add("consumer", lambda: False)
    async with client(HealthChecks(), live) as http:
        response = await http.get("/health/live")
    assert response.status_code == 503
    assert response.json()["failing"] == ["consumer"]


async def test_ready_when_every_check_passes() -> None:
    async def postgres() -> None:
        return None

    checks = HealthChecks()
    checks.add("postgres", postgres)
    checks.add("consumer", lambda: True)
    checks.add("relay", lambda: None)
    async with client(checks) as http:
        response = await http.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"postgres": {"ok": True}, "consumer": {"ok": True}, "relay": {"ok": True}},
    }


async def test_not_ready_names_the_failing_checks_and_their_errors() -> None:
    async def postgres() -> None:
        raise ConnectionRefusedError("connection refused")

    checks = HealthChecks()
    checks.add("postgres", postgres)
    checks.add("consumer", lambda: False)
    checks.add("relay", lambda: True)
    async with client(checks) as http:
        response = await http.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["postgres", "consumer"]
    assert body["checks"]["postgres"] == {
        "ok": False,
        "error": "ConnectionRefusedError: connection refused",
    }
    assert body["checks"]["consumer"] == {"ok": False, "error": "check returned False"}
    assert body["checks"]["relay"] == {"ok": True}


async def test_a_hanging_check_times_out_instead_of_hanging_readiness() -> None:
    never = asyncio.Event()

    async def kafka() -> None:
        await never.wait()

    checks = HealthChecks()
    checks.add("kafka", kafka, timeout=0.05)
    checks.add("postgres", lambda: True)
    async with client(checks) as http:
        response = await http.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["kafka"]
    assert body["checks"]["kafka"]["error"] == "timed out after 0.05s"


async def test_a_check_that_swallows_cancellation_still_cannot_hang_readiness() -> None:
    release, finished = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        try:
            await release.wait()
        except asyncio.CancelledError:
            await release.wait()  # ignores the cancel and keeps waiting
        finished.set()

    checks = HealthChecks(timeout=0.05)
    checks.add("stubborn", stubborn)
    async with client(checks) as http:
        response = await http.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["stubborn"]
    assert not finished.is_set()
    release.set()
    await asyncio.wait_for(finished.wait(), timeout=5)


async def test_a_note_is_reported_beside_its_check_without_failing_readiness() -> None:
    checks = HealthChecks()
    checks.add("auth", lambda: None, note="development secret in use")
    checks.add("postgres", lambda: True)
    async with client(checks) as http:
        response = await http.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "auth": {"ok": True, "note": "development secret in use"},
            "postgres": {"ok": True},
        },
    }


async def test_check_names_are_unique() -> None:
    checks = HealthChecks()
    checks.add("postgres", lambda: True)
    with pytest.raises(ValueError, match="postgres"):
        checks.add("postgres", lambda: True)


async def test_metrics_are_prometheus_text_from_the_default_registry() -> None:
    consumer = unique("health-test")
    MESSAGES_HANDLED.labels(consumer, "t", "OrderPlaced", "applied").inc()
    async with client(HealthChecks()) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE leadline_messages_handled_total counter" in response.text
    assert f'consumer="{consumer}"' in response.text


async def test_metrics_speak_openmetrics_when_asked() -> None:
    async with client(HealthChecks()) as http:
        response = await http.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_routes_are_documented_in_openapi() -> None:
    paths = app_with(HealthChecks()).openapi()["paths"]
    assert paths["/health/live"]["get"]["summary"] == "Liveness"
    assert paths["/health/ready"]["get"]["summary"] == "Readiness"
    assert "503" in paths["/health/ready"]["get"]["responses"]
    assert paths["/metrics"]["get"]["summary"] == "Prometheus metrics"
    assert "failing" in paths["/health/ready"]["get"]["description"]
