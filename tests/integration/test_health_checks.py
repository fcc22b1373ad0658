"""The readiness checks services add, against the real dependencies and a dead port."""

import asyncpg
import pytest

from shared.http.health import HealthChecks, kafka_check, postgres_check
from tests.support.processes import free_port

pytestmark = pytest.mark.integration


async def test_postgres_check_passes_on_a_live_database(pg_pool: asyncpg.Pool) -> None:
    checks = HealthChecks()
    checks.add("postgres", postgres_check(pg_pool))
    [outcome] = await checks.run()
    assert outcome.ok, outcome


async def test_kafka_check_passes_on_the_broker_and_fails_on_a_dead_port(
    kafka_bootstrap: str,
) -> None:
    live, dead = kafka_check(kafka_bootstrap), kafka_check(f"127.0.0.1:{free_port()}")
    checks = HealthChecks(timeout=5.0)
    checks.add("kafka", live)
    checks.add("nowhere", dead)
    try:
        outcomes = {o.name: o for o in await checks.run()}
    finally:
        await live.close()
        await dead.close()
    assert outcomes["kafka"].ok, outcomes["kafka"]
    assert not outcomes["nowhere"].ok
    assert outcomes["nowhere"].error


async def test_postgres_check_fails_when_the_pool_is_closed(pg_dsn: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    assert pool is not None
    await pool.close()
    checks = HealthChecks()
    checks.add("postgres", postgres_check(pool))
    [outcome] = await checks.run()
    assert not outcome.ok
