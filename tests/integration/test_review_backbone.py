"""Defects found in review of the consumer runner, each pinned by the test that exposed it."""

from __future__ import annotations

import collections
import uuid
from unittest import mock

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from schemas.checkout.v1 import OrderConfirmed
from shared.envelope import Envelope
from shared.errors import TransientError
from shared.kafka.dead_letters import dead_letter_topic, list_dead_letters
from shared.postgres import install_schema
from shared.postgres.uow import PostgresUnitOfWork
from tests.conftest import TopicFactory
from tests.integration.consumer_helpers import (
    FAST,
    Recorder,
    applied,
    confirmed,
    ends,
    produce,
    raw,
    runner_for,
    running,
    settled,
    topic,
)
from tests.integration.procs.counting_consumer import DDL, count
from tests.support import unique

pytestmark = pytest.mark.integration

__all__ = ["topic"]  # the fixture


async def test_a_record_with_a_null_type_header_neither_kills_the_loop_nor_blocks_the_partition(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    """Kafka headers may carry no value (upstream producers are outside our control). The
    type hint is then absent: the record is routed by its envelope like any other."""
    await install_schema(pg_pool, DDL)
    t = await topic()
    nulled, good = confirmed(unique("order")), confirmed(unique("order"))
    headers = [(k, None if k == "type" else v) for k, v in nulled.headers()]
    await produce(kafka_bootstrap, t, [(b"k", nulled.to_bytes(), headers), raw(good)])
    name = unique("consumer")

    # running() re-raises a dead loop's error on exit
    async with running(runner_for(name, kafka_bootstrap, t, Recorder(), pg_pool)):
        await settled(kafka_bootstrap, name, {0: 2})

    assert [r["event_id"] for r in await applied(pg_pool)] == [nulled.event_id, good.event_id]


async def test_outage_attempts_do_not_use_up_the_handler_failure_budget(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    """Outages retry without limit; only the handler's own failures count towards
    max_attempts. A first ordinary failure after a long outage (a deadlock as every consumer
    rushes back) is retried, not dead-lettered at once."""
    await install_schema(pg_pool, DDL)
    t = await topic()
    event = confirmed(unique("order"))
    calls: collections.Counter[uuid.UUID] = collections.Counter()
    outage_attempts = FAST.max_attempts + 1

    async def handler(envelope: Envelope, message: OrderConfirmed, uow: PostgresUnitOfWork) -> None:
        calls[envelope.event_id] += 1
        if calls[envelope.event_id] <= outage_attempts:
            raise ConnectionRefusedError("database away")
        if calls[envelope.event_id] == outage_attempts + 1:
            raise TransientError("deadlock detected")
        await count(envelope, message, uow)

    await produce(kafka_bootstrap, t, [raw(event)])
    name = unique("consumer")

    async with running(runner_for(name, kafka_bootstrap, t, handler, pg_pool)):
        await settled(kafka_bootstrap, name, {0: 1})

    assert [r["event_id"] for r in await applied(pg_pool)] == [event.event_id]
    assert calls[event.event_id] == outage_attempts + 2
    assert await list_dead_letters(kafka_bootstrap, dead_letter_topic(t)) == []


async def test_a_failed_start_leaves_no_group_member_holding_partitions(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    """start() fails after the Kafka consumer joined (here: the dead-letter producer cannot
    start). Had that consumer been left running, it would stay in the group and keep half
    of the partitions, unpolled, from the instance that starts next."""
    await install_schema(pg_pool, DDL)
    t = await topic(partitions=4)
    name = unique("consumer")
    failed = runner_for(name, kafka_bootstrap, t, Recorder(), pg_pool)
    refused = KafkaConnectionError("broker refused the producer")
    with (
        mock.patch.object(AIOKafkaProducer, "start", side_effect=refused),
        pytest.raises(KafkaConnectionError),
    ):
        await failed.start()

    events = [confirmed(unique("order")) for _ in range(8)]
    metadata = await produce(kafka_bootstrap, t, [raw(e) for e in events])
    async with running(runner_for(name, kafka_bootstrap, t, Recorder(), pg_pool)):
        await settled(kafka_bootstrap, name, ends(metadata))

    assert len(await applied(pg_pool)) == len(events)


async def test_a_broken_connection_does_not_hide_the_blocks_own_error(
    pg_pool: asyncpg.Pool,
) -> None:
    from shared.errors import PermanentError

    await install_schema(pg_pool)

    async def refuse_on_a_dropped_connection() -> None:
        async with PostgresUnitOfWork(pg_pool) as uow:
            pid = await uow.connection.fetchval("SELECT pg_backend_pid()")
            await pg_pool.execute("SELECT pg_terminate_backend($1)", pid)
            raise PermanentError("refused")

    with pytest.raises(PermanentError, match="refused"):
        await refuse_on_a_dropped_connection()
