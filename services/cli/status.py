"""Is every part of Leadline up: the Kafka brokers, each service's database, each service.

A service is judged by its own readiness (`/health/ready`, shared/http/health.py): `up` when it
passes, `not ready` with the failing checks when it answers 503, `down` when nothing answers.
Every probe runs at once under the same timeout, so one hung part cannot hide the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any, Literal

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from services.cli.errors import brief, redact
from services.cli.settings import CliSettings, Part
from shared.kafka.security import KafkaSecurity

State = Literal["up", "not ready", "down"]


@dataclass(frozen=True)
class Health:
    kind: Literal["kafka", "postgres", "service"]
    name: str
    target: str
    state: State
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def brokers(bootstrap: str, timeout: float, security: KafkaSecurity) -> list[Health]:
    """One line per live broker the cluster names; one `down` line when it cannot be asked."""
    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **security.aiokafka()
    )
    try:
        async with asyncio.timeout(timeout * 2):
            await client.start()
            cluster = await client.describe_cluster()
    except Exception as exc:
        return [Health("kafka", "kafka", bootstrap, "down", brief(exc))]
    finally:
        await client.close()
    controller = cluster.get("controller_id")
    return [
        Health(
            "kafka",
            f"broker {b['node_id']}",
            f"{b['host']}:{b['port']}",
            "up",
            "controller" if b["node_id"] == controller else "",
        )
        for b in sorted(cluster["brokers"], key=lambda b: b["node_id"])
    ]


async def database(part: Part, timeout: float) -> Health:
    target = redact(part.database_url)
    try:
        conn = await asyncpg.connect(part.database_url, timeout=timeout)
    except Exception as exc:
        return Health("postgres", part.name, target, "down", brief(exc))
    try:
        async with asyncio.timeout(timeout):
            version = await conn.fetchval("SHOW server_version")
        return Health("postgres", part.name, target, "up", f"PostgreSQL {version}")
    except Exception as exc:
        return Health("postgres", part.name, target, "down", brief(exc))
    finally:
        await conn.close()


async def service(part: Part, client: httpx.AsyncClient) -> Health:
    url = f"{part.url}/health/ready"
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return Health("service", part.name, part.url, "down", brief(exc))
    if response.status_code == 200:
        return Health("service", part.name, part.url, "up")
    try:
        report = response.json()
        failing = report.get("failing") or []
        checks = report.get("checks") or {}
        detail = "; ".join(
            f"{name}: {checks.get(name, {}).get('error', 'failing')}" for name in failing
        )
    except ValueError:
        detail = f"HTTP {response.status_code}"
    return Health(
        "service", part.name, part.url, "not ready", detail or f"HTTP {response.status_code}"
    )


async def everything(settings: CliSettings) -> list[Health]:
    timeout = settings.timeout
    parts = settings.parts()
    async with httpx.AsyncClient(timeout=timeout) as client:
        found = await asyncio.gather(
            brokers(settings.kafka_bootstrap_servers, timeout, settings.kafka_security),
            asyncio.gather(*(database(p, timeout) for p in parts)),
            asyncio.gather(*(service(p, client) for p in parts)),
        )
    kafka, databases, services = found
    return [*kafka, *databases, *services]
