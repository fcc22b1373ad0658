"""Fixtures for real infrastructure.

Kafka and PostgreSQL come from the environment (`KAFKA_BOOTSTRAP_SERVERS`, `POSTGRES_DSN`, as
`make test` sets them). Without them, a reachable Docker engine gives testcontainers; otherwise
the project's own `deploy/local/infra.sh up` starts real Kafka and PostgreSQL on this machine.
Every test gets its own database and its own topics, so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka.admin import ensure_topics

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    postgres_dsn: str  # a maintenance database; tests create their own next to it


def _docker_engine_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


def _testcontainers() -> Iterator[Infra]:  # pragma: no cover - needs a Docker engine
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with KafkaContainer().with_kraft() as kafka, PostgresContainer("postgres:16") as pg:
        dsn = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
        yield Infra(kafka.get_bootstrap_server(), dsn)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    dsn = os.environ.get("POSTGRES_DSN")
    if bootstrap and dsn:
        yield Infra(bootstrap, dsn)
        return
    if _docker_engine_reachable():
        yield from _testcontainers()
        return
    subprocess.run(["bash", str(ROOT / "deploy/local/infra.sh"), "up"], check=True)
    yield Infra("127.0.0.1:9092", "postgresql://leadline:leadline@127.0.0.1:5433/postgres")


@pytest.fixture(scope="session")
def kafka_bootstrap(infra: Infra) -> str:
    return infra.kafka_bootstrap


def _with_database(dsn: str, database: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def pg_dsn(infra: Infra) -> AsyncIterator[str]:
    """A fresh, empty database for this test alone (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(infra.postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(infra.postgres_dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pg_pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def new_topic(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """Create uniquely named topics for this test; they are deleted afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    made: list[str] = []

    async def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        await ensure_topics(kafka_bootstrap, [(name, partitions, {})])  # waits for leaders
        made.append(name)
        return name

    try:
        yield make
    finally:
        if made:
            await admin.delete_topics(made)
        await admin.close()


@pytest.fixture
async def catalogue_prefix(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A fresh copy of every catalogue topic under a unique prefix, for running whole services:
    set `LEADLINE_TOPIC_PREFIX` to it. Every topic under the prefix is deleted afterwards, those
    the services made themselves too (the orchestrator's faust topics)."""
    from shared.kafka.admin import catalogue_specs

    prefix = f"t{uuid.uuid4().hex[:10]}."
    await ensure_topics(kafka_bootstrap, catalogue_specs(prefix))
    try:
        yield prefix
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            made = [t for t in await admin.list_topics() if t.startswith(prefix)]
            await admin.delete_topics(made)
        finally:
            await admin.close()
