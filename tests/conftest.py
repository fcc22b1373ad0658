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
    """`docker info` answers (a Docker engine, or podman's compatible API via DOCKER_HOST)."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


def _testcontainers() -> Iterator[Infra]:
    """Kafka (KRaft, one node) and PostgreSQL as throw-away containers. The images are the
    public ones unless `LEADLINE_KAFKA_IMAGE` / `LEADLINE_POSTGRES_IMAGE` name others with the
    same contract (`make test-testcontainers` passes the ones built from Maven Central's jars
    and Debian's package, on podman's Docker-compatible API)."""
    import asyncio

    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer

    from shared.kafka.admin import wait_for_broker
    from tests.support.processes import free_port

    port = free_port()  # the broker must advertise the port the host reaches it on
    kafka = (
        DockerContainer(os.environ.get("LEADLINE_KAFKA_IMAGE", "apache/kafka:4.4.0"))
        .with_bind_ports(19092, port)
        .with_env("CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qk")
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:19092")
        .with_env(
            "KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://localhost:9092,HOST://127.0.0.1:{port}"
        )
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT",
        )
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    postgres = PostgresContainer(
        os.environ.get("LEADLINE_POSTGRES_IMAGE", "postgres:16"), driver=None
    ).with_command("postgres -c max_connections=300")
    with kafka, postgres:
        bootstrap = f"127.0.0.1:{port}"
        asyncio.run(wait_for_broker(bootstrap, timeout=120))
        # said once, visible with -s: which path the session took, and on which images
        print(f"infra: testcontainers, {kafka.image} at {bootstrap}, {postgres.image}")
        yield Infra(bootstrap, postgres.get_connection_url())


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
    from tests.support.processes import catalogue_copy

    async with catalogue_copy(kafka_bootstrap) as prefix:
        yield prefix
