"""The idempotent consumer runner on real Kafka and PostgreSQL (issue 3 item 6; done-when (a),
(b) and (d)). Effects are counted in PostgreSQL by the counting consumer's handler."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from schemas.checkout.v1 import OrderConfirmed
from shared.envelope import Envelope
from shared.kafka.consumer import ConsumerSettings
from shared.kafka.dead_letters import dead_letter_topic, list_dead_letters
from shared.observability.tracing import current_carrier
from shared.postgres import install_schema
from shared.postgres.uow import PostgresUnitOfWork
from tests.conftest import ROOT, TopicFactory
from tests.integration.consumer_helpers import (
    FAST,
    Recorder,
    applied,
    committed_offsets,
    confirmed,
    counter,
    ends,
    handled,
    inbox,
    polled,
    produce,
    raw,
    runner_for,
    running,
    settled,
    topic,
)
from tests.integration.procs.counting_consumer import DDL, application_name, count
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

__all__ = ["topic"]  # the fixture


async def test_an_event_delivered_three_times_is_applied_once(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic()
    thrice, after = confirmed(unique("order")), confirmed(unique("order"))
    await produce(kafka_bootstrap, t, [raw(thrice)] * 3 + [raw(after)])
    handler, name = Recorder(), unique("consumer")

    async with running(runner_for(name, kafka_bootstrap, t, handler, pg_pool)):
        await settled(kafka_bootstrap, name, {0: 4})

    rows = await applied(pg_pool)
    assert [(r["event_id"], r["times"]) for r in rows] == [
        (thrice.event_id, 1),
        (after.event_id, 1),
    ]
    assert await counter(pg_pool) == 2
    assert handler.calls == {thrice.event_id: 1, after.event_id: 1}
    assert await inbox(pg_pool) == {thrice.event_id, after.event_id}
    assert handled(name, t, "duplicate") == 2
    assert handled(name, t, "applied") == 2


async def test_a_transient_failure_is_retried_in_place_and_its_rollback_leaves_no_trace(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic(partitions=3)
    key_a, key_b = unique("order"), unique("order")
    events = [confirmed(k) for _ in range(4) for k in (key_a, key_b)]
    flaky = events[2]  # key_a's second event
    handler, name = Recorder(), unique("consumer")
    handler.fail_first[flaky.event_id] = 2
    handler.pool = pg_pool
    metadata = await produce(kafka_bootstrap, t, [raw(e) for e in events])

    async with running(runner_for(name, kafka_bootstrap, t, handler, pg_pool)):
        await settled(kafka_bootstrap, name, ends(metadata))

    rows = await applied(pg_pool)
    for key in (key_a, key_b):  # each key's events applied in the order produced
        produced = [e.event_id for e in events if e.key == key]
        assert [r["event_id"] for r in rows if r["key"] == key] == produced
    assert {r["times"] for r in rows} == {1}
    assert await counter(pg_pool) == len(events)
    assert handler.calls[flaky.event_id] == 3
    # the failed attempts' inbox rows were rolled back with their effects, so retries ran
    assert handler.seen_claimed_on_retry == [False, False]
    assert await list_dead_letters(kafka_bootstrap, dead_letter_topic(t)) == []


async def test_refused_and_exhausted_messages_are_dead_lettered_and_the_partition_moves_on(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic()
    refused, broken, good = (confirmed(unique("order")) for _ in range(3))
    handler, name = Recorder(), unique("consumer")
    handler.refuse.add(refused.event_id)
    handler.broken.add(broken.event_id)
    await produce(kafka_bootstrap, t, [raw(refused), raw(broken), raw(good)])

    async with running(runner_for(name, kafka_bootstrap, t, handler, pg_pool)):
        await settled(kafka_bootstrap, name, {0: 3})

    assert [r["event_id"] for r in await applied(pg_pool)] == [good.event_id]
    assert await inbox(pg_pool) == {good.event_id}
    assert handler.calls[refused.event_id] == 1  # PermanentError: never retried
    assert handler.calls[broken.event_id] == FAST.max_attempts
    letters = await list_dead_letters(kafka_bootstrap, dead_letter_topic(t))
    assert [(d.reason, d.event_id, d.origin_offset) for d in letters] == [
        ("rejected", str(refused.event_id), 0),
        ("handler-failed", str(broken.event_id), 1),
    ]
    assert "refused" in letters[0].error
    assert "RuntimeError: boom" in letters[1].error
    assert letters[0].value == refused.to_bytes()
    assert {d.consumer for d in letters} == {name}


def envelope_of(type_: str, version: int, payload: dict[str, Any]) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        type=type_,
        version=version,
        occurred_at=datetime.now(UTC),
        producer="test",
        key="k",
        correlation_id="k",
        payload=payload,
    )


async def test_bad_json_schema_violations_and_unknown_versions_are_dead_lettered(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic()
    violation = envelope_of("OrderConfirmed", 1, {"order_id": "no spaces allowed"})
    unknown = envelope_of("OrderConfirmed", 7, {"order_id": "o-1"})
    not_ours = envelope_of("OrderRejected", 1, {"order_id": "o-1", "reason": "r"})
    good = confirmed(unique("order"))
    records = [(b"k", b"{not json", []), raw(violation), raw(unknown), raw(not_ours), raw(good)]
    await produce(kafka_bootstrap, t, records)
    name = unique("consumer")

    async with running(runner_for(name, kafka_bootstrap, t, Recorder(), pg_pool)):
        await settled(kafka_bootstrap, name, {0: len(records)})

    assert [r["event_id"] for r in await applied(pg_pool)] == [good.event_id]
    letters = await list_dead_letters(kafka_bootstrap, dead_letter_topic(t))
    assert [(d.reason, d.origin_topic, d.origin_offset) for d in letters] == [
        ("invalid-envelope", t, 0),
        ("schema-violation", t, 1),
        ("unknown-version", t, 2),
    ]  # the type nobody here subscribes to (offset 3) is skipped, not dead-lettered
    assert "not JSON" in letters[0].error
    assert "order_id" in letters[1].error
    assert "version 7" in letters[2].error
    assert [d.value for d in letters] == [records[i][1] for i in range(3)]
    assert letters[1].headers == violation.headers()
    assert handled(name, t, "applied") == 1


async def test_batched_transactions_keep_every_guarantee(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    """One transaction per 50 records: a failing record rolls its batch back, which is redone
    one by one, so only that record retries or is dead-lettered."""
    await install_schema(pg_pool, DDL)
    t = await topic(partitions=2)
    keys = [unique("order") for _ in range(4)]
    events = [confirmed(k) for _ in range(40) for k in keys]
    handler, name = Recorder(), unique("consumer")
    handler.fail_first[events[30].event_id] = 1
    handler.refuse.add(events[100].event_id)
    records = [raw(e) for e in events] + [raw(events[5])]  # and one redelivery
    metadata = await produce(kafka_bootstrap, t, records)
    batched = ConsumerSettings(
        poll_timeout_ms=200, max_attempts=3, backoff_initial=0.01, transaction_batch=50
    )

    async with running(runner_for(name, kafka_bootstrap, t, handler, pg_pool, batched)):
        await settled(kafka_bootstrap, name, ends(metadata))

    rows = await applied(pg_pool)
    for key in keys:
        produced = [e.event_id for e in events if e.key == key and e is not events[100]]
        assert [r["event_id"] for r in rows if r["key"] == key] == produced
    assert {r["times"] for r in rows} == {1}
    assert await counter(pg_pool) == len(events) - 1
    letters = await list_dead_letters(kafka_bootstrap, dead_letter_topic(t))
    assert [(d.reason, d.event_id) for d in letters] == [("rejected", str(events[100].event_id))]


async def test_liveness_notices_a_stuck_handler(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic()
    entered, release = asyncio.Event(), asyncio.Event()

    async def stuck(envelope: Envelope, message: OrderConfirmed, uow: PostgresUnitOfWork) -> None:
        entered.set()
        await release.wait()
        await count(envelope, message, uow)

    settings = ConsumerSettings(poll_timeout_ms=100, liveness_window=0.5)
    runner = runner_for(unique("consumer"), kafka_bootstrap, t, stuck, pg_pool, settings)
    async with running(runner):
        await eventually(polled(runner.is_alive), bool, what="alive")
        await produce(kafka_bootstrap, t, [raw(confirmed(unique("order")))])
        await eventually(polled(entered.is_set), bool, what="handler entered")
        await eventually(polled(runner.is_alive), lambda a: not a, what="stuck")
        release.set()
        await eventually(polled(runner.is_alive), bool, what="alive again")
    assert not runner.is_alive()
    assert len(await applied(pg_pool)) == 1


async def test_a_rebalance_mid_stream_applies_every_event_once(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic(partitions=4)
    keys = [unique("order") for _ in range(16)]
    first = [confirmed(k) for _ in range(60) for k in keys]
    second = [confirmed(k) for _ in range(10) for k in keys]
    name, handler_a, handler_b = unique("consumer"), Recorder(), Recorder()
    meta = await produce(kafka_bootstrap, t, [raw(e) for e in first])
    settings = ConsumerSettings(poll_timeout_ms=200, max_poll_records=50, heartbeat_interval_ms=300)

    async with running(runner_for(name, kafka_bootstrap, t, handler_a, pg_pool, settings)):
        await eventually(lambda: counter(pg_pool), lambda n: n >= 50, what="first runner busy")
        runner_b = runner_for(name, kafka_bootstrap, t, handler_b, pg_pool, settings)
        async with running(runner_b):  # joins the group mid-stream: the first is revoked
            await eventually(polled(runner_b.is_alive), bool, what="b polls")
            meta += await produce(kafka_bootstrap, t, [raw(e) for e in second])
            await settled(kafka_bootstrap, name, ends(meta))

    events = first + second
    rows = await applied(pg_pool)
    assert len(rows) == len(events)
    assert {r["times"] for r in rows} == {1}
    assert await counter(pg_pool) == len(events)
    assert sum(handler_a.calls.values()) + sum(handler_b.calls.values()) == len(events)
    for key in keys:
        produced = [e.event_id for e in events if e.key == key]
        assert [r["event_id"] for r in rows if r["key"] == key] == produced
    # the revoked runner committed what it had settled before the new owner read on
    assert handled(name, t, "duplicate") == 0


async def test_a_consumer_killed_mid_batch_and_restarted_applies_every_event_exactly_once(
    pg_pool: asyncpg.Pool, pg_dsn: str, kafka_bootstrap: str, topic: TopicFactory, tmp_path: Path
) -> None:
    """A test transaction holds the inbox key of one event in the middle of the stream, so
    the consumer process parks inside that event's transaction, mid-batch, every run; then it
    gets SIGKILL. Effects of the batch's earlier records are committed, their offsets are not."""
    await install_schema(pg_pool, DDL)
    t = await topic(partitions=4)
    keys = [unique("order") for _ in range(40)]
    events = [confirmed(k) for _ in range(50) for k in keys]  # 2,000
    await produce(kafka_bootstrap, t, [raw(e) for e in events])
    name = unique("counting")
    parked = events[1234]

    blocker = await pg_pool.acquire()
    block = blocker.transaction()
    await block.start()
    await blocker.execute(
        "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)", name, parked.event_id
    )

    async def start(log_name: str) -> asyncio.subprocess.Process:
        log = (tmp_path / log_name).open("wb")
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.integration.procs.counting_consumer",
                *("--bootstrap", kafka_bootstrap, "--dsn", pg_dsn, "--topic", t, "--name", name),
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()

    async def parked_on_lock() -> int:
        n: int = await pg_pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            " AND wait_event_type = 'Lock'",
            application_name(name),
        )
        return n

    proc = await start("first.log")
    try:
        await eventually(parked_on_lock, lambda n: n == 1, what="consumer parked", timeout=60)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # PostgreSQL notices the dead client only when the blocked statement ends; end it now.
    await pg_pool.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        application_name(name),
    )
    await block.rollback()
    await pg_pool.release(blocker)
    applied_at_kill = len(await applied(pg_pool))
    committed_at_kill = sum((await committed_offsets(kafka_bootstrap, name)).values())
    assert 0 < applied_at_kill < len(events)

    proc = await start("second.log")
    try:
        await eventually(
            lambda: counter(pg_pool), lambda n: n >= len(events), what="all applied", timeout=90
        )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    rows = await applied(pg_pool)
    assert len(rows) == len(events)
    assert {r["times"] for r in rows} == {1}
    assert await counter(pg_pool) == len(events)
    assert await inbox(pg_pool) == {e.event_id for e in events}
    for key in keys:
        produced = [e.event_id for e in events if e.key == key]
        assert [r["event_id"] for r in rows if r["key"] == key] == produced
    # the kill left effects committed ahead of the offsets: the restart met them as duplicates
    duplicates = (tmp_path / "second.log").read_text().count('"duplicate skipped"')
    assert duplicates == applied_at_kill - committed_at_kill


async def test_stop_cancels_a_hung_handler_and_its_record_is_delivered_again(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic()
    entered, never = asyncio.Event(), asyncio.Event()

    async def hangs(envelope: Envelope, message: OrderConfirmed, uow: PostgresUnitOfWork) -> None:
        await count(envelope, message, uow)  # written, then never committed
        entered.set()
        await never.wait()

    name = unique("consumer")
    settings = ConsumerSettings(poll_timeout_ms=100, stop_timeout=0.5)
    hung = runner_for(name, kafka_bootstrap, t, hangs, pg_pool, settings)
    await hung.start()
    loop = asyncio.create_task(hung.run())
    await produce(kafka_bootstrap, t, [raw(confirmed(unique("order")))])
    await eventually(polled(entered.is_set), bool, what="handler entered")
    await hung.stop()  # returns although the handler never does
    await asyncio.wait({loop})
    assert loop.cancelled()
    assert await applied(pg_pool) == []  # the hung transaction rolled back

    async with running(runner_for(name, kafka_bootstrap, t, count, pg_pool, FAST)):
        await eventually(lambda: applied(pg_pool), lambda rows: len(rows) == 1, what="redelivered")
    assert {r["times"] for r in await applied(pg_pool)} == {1}


async def test_records_from_a_newer_producer_with_more_envelope_fields_are_applied(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    # this runner is the "old consumer": the producer is a release ahead, adding trace context
    # to the envelope and the headers
    await install_schema(pg_pool, DDL)
    t = await topic()
    current = confirmed(unique("order"))
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    newer = orjson.dumps({**current.model_dump(mode="json"), "traceparent": trace})
    headers = [*current.headers(), ("traceparent", trace.encode())]
    await produce(kafka_bootstrap, t, [(current.key.encode(), newer, headers)])
    name = unique("consumer")

    async with running(runner_for(name, kafka_bootstrap, t, Recorder(), pg_pool)):
        await settled(kafka_bootstrap, name, {0: 1})

    assert [r["event_id"] for r in await applied(pg_pool)] == [current.event_id]
    assert await list_dead_letters(kafka_bootstrap, dead_letter_topic(t)) == []


async def test_trace_headers_and_unknown_ones_are_applied_and_the_handler_runs_in_their_trace(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    # an untraced consumer meets a traced producer's records (traceparent, tracestate) with a
    # header nobody here knows and one without a value, and a record from a producer that
    # sends no context at all: both are applied; the first hands its context to the handler
    # (so to what it appends), the second gives it none
    await install_schema(pg_pool, DDL)
    t = await topic()
    traced, foreign = confirmed(unique("order")), confirmed(unique("order"))
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    extra = [
        ("traceparent", parent.encode()),
        ("tracestate", b"vendor=1"),
        ("x-vendor-request", b"\xff\x00binary"),
        ("x-empty", None),
    ]
    await produce(
        kafka_bootstrap,
        t,
        [
            (traced.key.encode(), traced.to_bytes(), [*traced.headers(), *extra]),
            (foreign.key.encode(), foreign.to_bytes(), []),
        ],
    )
    contexts: dict[uuid.UUID, dict[str, str]] = {}

    class InTrace(Recorder):
        async def __call__(
            self, envelope: Envelope, message: OrderConfirmed, uow: PostgresUnitOfWork
        ) -> None:
            contexts[envelope.event_id] = current_carrier()
            await super().__call__(envelope, message, uow)

    name = unique("consumer")
    async with running(runner_for(name, kafka_bootstrap, t, InTrace(), pg_pool)):
        await settled(kafka_bootstrap, name, {0: 2})

    assert [r["event_id"] for r in await applied(pg_pool)] == [traced.event_id, foreign.event_id]
    assert contexts == {
        traced.event_id: {"traceparent": parent, "tracestate": "vendor=1"},
        foreign.event_id: {},
    }
    assert await list_dead_letters(kafka_bootstrap, dead_letter_topic(t)) == []
