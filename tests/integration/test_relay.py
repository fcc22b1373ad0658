"""The outbox relay on real PostgreSQL and real Kafka (issue 3 item 5, done-when (c))."""

from __future__ import annotations

import asyncio
import collections
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

import schemas  # noqa: F401  (registers every message model)
from schemas.inventory.v1 import ReleaseStock
from shared.envelope import Envelope
from shared.postgres import install_schema
from shared.postgres.outbox import prune_outbox
from shared.postgres.uow import PostgresUnitOfWork
from shared.relay import OutboxRelay
from tests.conftest import ROOT, TopicFactory
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


class Rollback(Exception):
    pass


def envelopes(keys: Sequence[str], per_key: int) -> list[Envelope]:
    """Keys interleaved (k0, k1, k2, k0, …) so each batch mixes keys and partitions."""
    return [
        Envelope.wrap(ReleaseStock(order_id=key, reason=f"step {i}"), key=key, producer="test")
        for i in range(per_key)
        for key in keys
    ]


async def append(pool: asyncpg.Pool, topic: str, batch: Sequence[Envelope], tx_size: int) -> None:
    for start in range(0, len(batch), tx_size):
        async with PostgresUnitOfWork(pool) as uow:
            for env in batch[start : start + tx_size]:
                await uow.outbox.append(topic, env)


async def append_then_fail(pool: asyncpg.Pool, topic: str, batch: Sequence[Envelope]) -> None:
    async with PostgresUnitOfWork(pool) as uow:
        for env in batch:
            await uow.outbox.append(topic, env)
        raise Rollback


class TopicReader:
    """Everything on a topic from the beginning, in partition order."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        self.envelopes: list[Envelope] = []

    async def poll(self) -> list[Envelope]:
        """Every envelope read so far (duplicates included)."""
        batches = await self._consumer.getmany(timeout_ms=200)
        for tp in sorted(batches, key=lambda tp: tp.partition):
            for r in batches[tp]:
                self.records.append((r.key, r.value, list(r.headers)))
                self.envelopes.append(Envelope.from_bytes(r.value))
        return list(self.envelopes)


ReaderFactory = Callable[[str], Awaitable[TopicReader]]


@pytest.fixture
async def reader_for(kafka_bootstrap: str) -> AsyncIterator[ReaderFactory]:
    consumers: list[AIOKafkaConsumer] = []

    async def make(topic: str) -> TopicReader:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        consumers.append(consumer)
        consumer.subscribe([topic])  # no group: every partition, from the earliest offset
        return TopicReader(consumer)

    yield make
    for c in consumers:
        await c.stop()


def first_occurrences(received: Sequence[Envelope]) -> dict[str, list[str]]:
    seen: set[str] = set()
    per_key: dict[str, list[str]] = collections.defaultdict(list)
    for env in received:
        if str(env.event_id) not in seen:
            seen.add(str(env.event_id))
            per_key[env.key].append(str(env.event_id))
    return dict(per_key)


def expected_order(sent: Sequence[Envelope]) -> dict[str, list[str]]:
    per_key: dict[str, list[str]] = collections.defaultdict(list)
    for env in sent:
        per_key[env.key].append(str(env.event_id))
    return dict(per_key)


def distinct(n: int) -> Callable[[list[Envelope]], bool]:
    return lambda received: len({e.event_id for e in received}) >= n


async def unsent(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    return count


async def lock_holder(pool: asyncpg.Pool) -> int | None:
    """The backend holding this database's relay lock."""
    pid: int | None = await pool.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return pid


def published_by(relay: OutboxRelay) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return relay.published

    return probe


Start = Callable[[OutboxRelay], Awaitable[asyncio.Task[None]]]


@pytest.fixture
async def start(pg_pool: asyncpg.Pool) -> AsyncIterator[Start]:
    """Run relays as tasks; stopped before the pools close, even when the test failed."""
    running: dict[OutboxRelay, asyncio.Task[None]] = {}

    async def run(relay: OutboxRelay) -> asyncio.Task[None]:
        running[relay] = asyncio.create_task(relay.run())
        return running[relay]

    yield run
    for relay in running:
        await relay.stop()
    await asyncio.gather(*running.values())


async def test_committed_rows_reach_kafka_in_key_order_and_rolled_back_rows_never(
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    reader_for: ReaderFactory,
    start: Start,
) -> None:
    await install_schema(pg_pool)
    topic = await new_topic("relay", partitions=3)
    keys = [unique("order") for _ in range(3)]
    committed = envelopes(keys, 20)
    doomed = envelopes(keys, 2)
    name = unique("relay")
    relay = OutboxRelay(
        pool=pg_pool, bootstrap_servers=kafka_bootstrap, name=name, poll_interval=0.2
    )
    task = await start(relay)
    await append(pg_pool, topic, committed[:30], tx_size=7)
    with pytest.raises(Rollback):
        await append_then_fail(pg_pool, topic, doomed)
    await append(pg_pool, topic, committed[30:], tx_size=7)

    reader = await reader_for(topic)
    received = await eventually(reader.poll, distinct(len(committed)), what="all rows in Kafka")
    assert relay.is_alive()

    by_id = {e.event_id: e for e in committed}
    assert {e.event_id for e in received} == set(by_id)  # nothing rolled back, nothing lost
    for key, value, headers in reader.records:
        env = by_id[Envelope.from_bytes(value).event_id]
        assert value == env.to_bytes()
        assert key == env.key.encode()
        assert headers == env.headers()
    assert first_occurrences(received) == expected_order(committed)

    await eventually(lambda: unsent(pg_pool), lambda n: n == 0, what="every row marked sent")
    await relay.stop()
    await task
    assert not relay.is_alive()
    labels = {"relay": name, "topic": topic}
    assert REGISTRY.get_sample_value("leadline_outbox_published_total", labels) == 60
    assert REGISTRY.get_sample_value("leadline_outbox_backlog", {"relay": name}) == 0

    await append(pg_pool, topic, envelopes(keys, 1), tx_size=3)
    assert await prune_outbox(pg_pool, timedelta(0)) == len(committed)  # sent rows only
    assert await unsent(pg_pool) == 3


async def test_notify_wakes_an_idle_relay_long_before_its_poll(
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    reader_for: ReaderFactory,
    start: Start,
) -> None:
    await install_schema(pg_pool)
    topic = await new_topic("relay")
    first, second = envelopes([unique("order")], 2)
    relay = OutboxRelay(
        pool=pg_pool, bootstrap_servers=kafka_bootstrap, name=unique("relay"), poll_interval=30
    )
    task = await start(relay)
    reader = await reader_for(topic)
    await append(pg_pool, topic, [first], tx_size=1)
    await eventually(reader.poll, distinct(1), what="first row")
    # the relay is now idle until its next poll, 30 s away; only the NOTIFY can wake it
    await append(pg_pool, topic, [second], tx_size=1)
    received = await eventually(reader.poll, distinct(2), timeout=10, what="second row")
    assert [e.event_id for e in received] == [first.event_id, second.event_id]
    assert relay.is_alive()
    assert not task.done()


async def test_a_row_kafka_refuses_stops_its_batch_and_the_rows_behind_it_wait(
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    reader_for: ReaderFactory,
    start: Start,
) -> None:
    await install_schema(pg_pool)
    topic = await new_topic("relay")
    first, second, behind = envelopes([unique("order")], 3)
    # over the producer's 1 MB request limit: refused on every attempt, so parked, and the row
    # behind it (same key) waits until the parked row is gone (test_relay_parking.py has more)
    poison = second.model_copy(update={"event_id": uuid.uuid4(), "payload": {"x": "x" * 2**21}})
    await append(pg_pool, topic, [first, second, poison, behind], tx_size=4)
    relay = OutboxRelay(
        pool=pg_pool, bootstrap_servers=kafka_bootstrap, name=unique("relay"), poll_interval=0.2
    )
    await start(relay)

    async def unsent_ids() -> set[uuid.UUID]:
        rows = await pg_pool.fetch("SELECT event_id FROM outbox WHERE sent_at IS NULL")
        return {r["event_id"] for r in rows}

    await eventually(unsent_ids, lambda ids: ids == {poison.event_id, behind.event_id})
    assert relay.is_alive()
    await pg_pool.execute("DELETE FROM outbox WHERE event_id = $1", poison.event_id)
    reader = await reader_for(topic)
    received = await eventually(reader.poll, distinct(3), what="rows behind the refused one")
    # exactly once each: the row behind the refused one was neither sent with the failed batch
    # nor marked without being sent
    assert [e.event_id for e in received] == [first.event_id, second.event_id, behind.event_id]


async def test_two_relays_on_one_database_one_publishes_and_the_other_takes_over(
    pg_dsn: str,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    reader_for: ReaderFactory,
    start: Start,
) -> None:
    pools = [await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4) for _ in range(2)]
    await install_schema(pools[0])
    topic = await new_topic("relay", partitions=3)
    keys = [unique("order") for _ in range(4)]
    relays = [
        OutboxRelay(
            pool=pool,
            bootstrap_servers=kafka_bootstrap,
            name=unique("relay"),
            poll_interval=0.2,
            standby_interval=0.2,
        )
        for pool in pools
    ]
    tasks = {r: await start(r) for r in relays}
    reader = await reader_for(topic)
    try:

        async def active() -> list[OutboxRelay]:
            return [r for r in relays if r.active]

        leader = (await eventually(active, lambda a: len(a) == 1, what="one active relay"))[0]
        standby = next(r for r in relays if r is not leader)
        before = envelopes(keys, 50)
        await asyncio.gather(*(append(pools[i % 2], topic, before[i::4], 5) for i in range(4)))
        await eventually(reader.poll, distinct(len(before)), what="rows of the first relay")
        await eventually(published_by(leader), lambda n: n == len(before))
        assert standby.published == 0
        assert standby.is_alive()
        assert not standby.active

        await leader.stop()
        await tasks[leader]
        await eventually(active, lambda a: a == [standby], what="takeover")
        after = envelopes(keys, 25)
        await append(pools[0], topic, after, tx_size=10)
        await eventually(reader.poll, distinct(len(before) + len(after)))
        await eventually(published_by(standby), lambda n: n == len(after))

        # the lock connection dies under the active relay: it stands by, then leads again on
        # a new session (the lock is free) and goes on publishing
        holder = await lock_holder(pools[0])
        await pools[0].execute("SELECT pg_terminate_backend($1)", holder)
        await eventually(lambda: lock_holder(pools[0]), lambda pid: pid not in (None, holder))
        later = envelopes(keys, 10)
        await append(pools[0], topic, later, tx_size=10)
        sent = [e for group in (before, after, later) for e in group]
        received = await eventually(reader.poll, distinct(len(sent)), what="rows after lock loss")
        assert standby.is_alive()
        # rows appended concurrently commit in any order; a key's order is its commit order,
        # which for one key here is append order because each key has one appender
        assert first_occurrences(received) == expected_order(sent)
    finally:
        for r in relays:
            await r.stop()
        await asyncio.gather(*tasks.values())
        for pool in pools:
            await pool.close()


async def run_relay_process_until_parked(
    pool: asyncpg.Pool,
    dsn: str,
    bootstrap: str,
    name: str,
    batch_size: int,
    parked: int,
    tmp_path: Path,
) -> None:
    """Start `python -m shared.relay`, wait until it has marked `parked` rows and waits on a
    row lock, then SIGKILL it."""
    log_path = tmp_path / "relay.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "shared.relay", "--dsn", dsn, "--bootstrap", bootstrap),
            *("--name", name, "--batch-size", str(batch_size)),
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        try:

            async def progress() -> tuple[int, int]:
                sent = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
                waiting = await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                    " AND wait_event_type = 'Lock'",
                    f"relay:{name}",
                )
                return sent, waiting

            await eventually(
                progress, lambda p: p == (parked, 1), what=f"relay parked ({log_path})"
            )
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_relay_process_killed_mid_batch_loses_nothing_and_keeps_key_order(
    pg_pool: asyncpg.Pool,
    pg_dsn: str,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    reader_for: ReaderFactory,
    start: Start,
    tmp_path: Path,
) -> None:
    """SIGKILL lands after the relay published a batch and before its mark committed: the
    window in which only at-least-once publishing saves a row. A row lock the test holds on
    one row of the 14th batch parks the relay exactly there, so the kill is mid-batch every run."""
    await install_schema(pg_pool)
    topic = await new_topic("relay", partitions=3)
    keys = [unique("order") for _ in range(8)]
    rows = envelopes(keys, 625)  # 5,000 rows
    await append(pg_pool, topic, rows, tx_size=500)
    batch_size, blocked_batch = 200, 13

    parked = batch_size * blocked_batch  # rows marked sent when the relay parks
    name = unique("relay")
    blocker = await asyncpg.connect(pg_dsn)
    try:
        async with blocker.transaction():
            await blocker.execute(
                "SELECT id FROM outbox WHERE id ="
                " (SELECT id FROM outbox ORDER BY id OFFSET $1 LIMIT 1) FOR UPDATE",
                parked + 50,
            )
            await run_relay_process_until_parked(
                pg_pool, pg_dsn, kafka_bootstrap, name, batch_size, parked, tmp_path
            )
            # PostgreSQL notices a dead client only when its blocked statement ends (or at the
            # next client_connection_check_interval); end it now, as that check would.
            await blocker.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1",
                f"relay:{name}",
            )
    finally:
        await blocker.close()
    assert await unsent(pg_pool) == len(rows) - parked

    relay = OutboxRelay(
        pool=pg_pool, bootstrap_servers=kafka_bootstrap, name=unique("relay"), poll_interval=0.2
    )
    await start(relay)
    reader = await reader_for(topic)
    received = await eventually(reader.poll, distinct(len(rows)), what="every row in Kafka")
    assert {e.event_id for e in received} == {e.event_id for e in rows}
    assert first_occurrences(received) == expected_order(rows)
    # the parked batch was published by the killed relay and again by its successor
    await eventually(reader.poll, lambda r: len(r) >= len(rows) + batch_size)
    await eventually(lambda: unsent(pg_pool), lambda n: n == 0, what="every row marked")
