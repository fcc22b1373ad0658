"""One contract for the event store, outbox and inbox ports, held against the in-memory twin
and the real PostgreSQL adapters (each test gets a fresh database)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import pytest

from schemas.checkout.v1 import OrderConfirmed
from shared.envelope import Envelope
from shared.memory import MemoryDatabase, MemoryUnitOfWork
from shared.ports import (
    Claim,
    ConcurrencyError,
    DuplicateEventError,
    InboxEntry,
    NewEvent,
    Snapshot,
    UnitOfWork,
)
from shared.postgres import install_schema
from shared.postgres.uow import PostgresUnitOfWork
from tests.support import unique

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


@dataclass
class Backend:
    uow: Callable[[], UnitOfWork]
    # (topic, key, event_id) of every committed outbox row, in append order
    committed_outbox: Callable[[], Awaitable[list[tuple[str, str, uuid.UUID]]]]


@pytest.fixture
def memory_backend() -> Backend:
    db = MemoryDatabase()

    async def committed_outbox() -> list[tuple[str, str, uuid.UUID]]:
        return [(topic, env.key, env.event_id) for topic, env in db.outbox]

    return Backend(lambda: MemoryUnitOfWork(db), committed_outbox)


@pytest.fixture
async def postgres_backend(pg_pool: asyncpg.Pool) -> Backend:
    await install_schema(pg_pool)

    async def committed_outbox() -> list[tuple[str, str, uuid.UUID]]:
        rows = await pg_pool.fetch("SELECT topic, key, event_id FROM outbox ORDER BY id")
        return [(r["topic"], r["key"], r["event_id"]) for r in rows]

    return Backend(lambda: PostgresUnitOfWork(pg_pool), committed_outbox)


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    found: Backend = request.getfixturevalue(f"{request.param}_backend")
    return found


def event(n: int, **metadata: Any) -> NewEvent:
    return NewEvent(uuid.uuid4(), "Deposited", 1, {"cents": n, "note": "ü"}, metadata)


def envelope(key: str) -> Envelope:
    return Envelope.wrap(OrderConfirmed(order_id=key), key=key, producer="contract-test")


async def load(backend: Backend, stream: str, **kw: Any) -> list[int]:
    async with backend.uow() as uow:
        return [e.stream_version for e in await uow.events.load(stream, **kw)]


async def test_appended_events_load_back_in_order_with_everything_stored(backend: Backend) -> None:
    stream = unique("s")
    first, second, third = event(1, correlation_id="c-1"), event(2), event(3)
    async with backend.uow() as uow:
        assert await uow.events.append(stream, 0, [first, second]) == 2
    async with backend.uow() as uow:
        assert await uow.events.append(stream, 2, [third]) == 3
    async with backend.uow() as uow:
        loaded = await uow.events.load(stream)
    assert [(e.stream_id, e.stream_version) for e in loaded] == [
        (stream, 1),
        (stream, 2),
        (stream, 3),
    ]
    assert [(e.event_id, e.type, e.version, e.payload, e.metadata) for e in loaded] == [
        (x.event_id, x.type, x.version, x.payload, x.metadata) for x in (first, second, third)
    ]
    positions = [e.position for e in loaded]
    assert positions == sorted(set(positions))
    assert all(e.recorded_at.tzinfo is not None for e in loaded)


async def test_load_filters_by_version_range(backend: Backend) -> None:
    stream = unique("s")
    async with backend.uow() as uow:
        await uow.events.append(stream, 0, [event(n) for n in range(1, 6)])
    assert await load(backend, stream, after_version=2) == [3, 4, 5]
    assert await load(backend, stream, up_to_version=2) == [1, 2]
    assert await load(backend, stream, after_version=1, up_to_version=3) == [2, 3]
    assert await load(backend, unique("empty")) == []


async def test_load_as_of_a_time_returns_what_was_recorded_by_then(backend: Backend) -> None:
    stream = unique("s")
    for n in range(3):
        async with backend.uow() as uow:
            await uow.events.append(stream, n, [event(n)])
    async with backend.uow() as uow:
        recorded = [e.recorded_at for e in await uow.events.load(stream)]
    assert recorded == sorted(recorded)
    assert await load(backend, stream, as_of=recorded[1]) == [1, 2]
    assert await load(backend, stream, as_of=recorded[0] - timedelta(microseconds=1)) == []
    assert await load(backend, stream, as_of=datetime.now(UTC) + timedelta(days=1)) == [1, 2, 3]


async def test_a_unit_of_work_reads_its_own_appends_and_others_do_not(backend: Backend) -> None:
    stream = unique("s")
    async with backend.uow() as uow:
        await uow.events.append(stream, 0, [event(1)])
        await uow.events.append(stream, 1, [event(2)])
        assert [e.stream_version for e in await uow.events.load(stream)] == [1, 2]
        assert await load(backend, stream) == []
    assert await load(backend, stream) == [1, 2]


async def test_a_stale_expected_version_is_a_concurrency_error(backend: Backend) -> None:
    stream = unique("s")
    async with backend.uow() as uow:
        await uow.events.append(stream, 0, [event(1)])
    with pytest.raises(ConcurrencyError):
        async with backend.uow() as uow:
            await uow.events.append(stream, 0, [event(2)])
    assert await load(backend, stream) == [1]


async def test_an_expected_version_ahead_of_the_stream_is_a_concurrency_error(
    backend: Backend,
) -> None:
    stream = unique("s")
    with pytest.raises(ConcurrencyError):
        async with backend.uow() as uow:
            await uow.events.append(stream, 3, [event(1)])
    async with backend.uow() as uow:
        await uow.events.append(stream, 0, [event(1)])
    with pytest.raises(ConcurrencyError):
        async with backend.uow() as uow:
            await uow.events.append(stream, 2, [event(2)])
    assert await load(backend, stream) == [1]


async def test_the_later_of_two_overlapping_writers_gets_a_concurrency_error(
    backend: Backend,
) -> None:
    stream = unique("s")
    async with backend.uow() as uow:
        await uow.events.append(stream, 0, [event(1)])

    async def late_writer() -> None:
        async with backend.uow() as late:  # opened before the other writer commits
            async with backend.uow() as early:
                await early.events.append(stream, 1, [event(2)])
            await late.events.append(stream, 1, [event(3)])

    with pytest.raises(ConcurrencyError):
        await late_writer()
    async with backend.uow() as uow:
        assert [e.payload["cents"] for e in await uow.events.load(stream)] == [1, 2]


async def test_snapshots_latest_and_up_to_a_version(backend: Backend) -> None:
    stream = unique("s")
    now = datetime.now(UTC)
    async with backend.uow() as uow:
        assert await uow.events.latest_snapshot(stream) is None
        await uow.events.save_snapshot(Snapshot(stream, 5, 1, {"total": 5}, now))
        await uow.events.save_snapshot(Snapshot(stream, 10, 2, {"total": 10, "x": [1]}, now))
    async with backend.uow() as uow:
        latest = await uow.events.latest_snapshot(stream)
        older = await uow.events.latest_snapshot(stream, up_to_version=9)
        none = await uow.events.latest_snapshot(stream, up_to_version=4)
        other = await uow.events.latest_snapshot(unique("other"))
    assert latest is not None
    assert older is not None
    assert (latest.stream_id, latest.stream_version, latest.schema_version) == (stream, 10, 2)
    assert latest.state == {"total": 10, "x": [1]}
    assert (older.stream_version, older.state) == (5, {"total": 5})
    assert (none, other) == (None, None)


async def test_a_snapshot_saved_again_at_the_same_version_replaces_the_old(
    backend: Backend,
) -> None:
    stream = unique("s")
    now = datetime.now(UTC)
    async with backend.uow() as uow:
        await uow.events.save_snapshot(Snapshot(stream, 3, 1, {"v": "old"}, now))
    async with backend.uow() as uow:
        await uow.events.save_snapshot(Snapshot(stream, 3, 2, {"v": "new"}, now))
    async with backend.uow() as uow:
        snapshot = await uow.events.latest_snapshot(stream)
    assert snapshot is not None
    assert (snapshot.schema_version, snapshot.state) == (2, {"v": "new"})


async def test_outbox_rows_are_visible_only_after_commit(backend: Backend) -> None:
    topic, key = unique("topic"), unique("order")
    first, second = envelope(key), envelope(key)
    async with backend.uow() as uow:
        await uow.outbox.append(topic, first)
        await uow.outbox.append(topic, second)
        assert await backend.committed_outbox() == []
    assert await backend.committed_outbox() == [
        (topic, key, first.event_id),
        (topic, key, second.event_id),
    ]


async def claim(uow: UnitOfWork, consumer: str, event_id: uuid.UUID, **kw: str) -> Claim:
    where = {"scope": "topic|producer", "fingerprint": "OrderPlaced|o-1", **kw}
    return await uow.inbox.claim(consumer, event_id, **where)


async def test_an_inbox_key_is_claimed_once(backend: Backend) -> None:
    consumer, event_id = unique("consumer"), uuid.uuid4()
    async with backend.uow() as uow:
        assert await claim(uow, consumer, event_id) is Claim.NEW
        assert await claim(uow, consumer, event_id) is Claim.DUPLICATE
        assert await claim(uow, unique("other-consumer"), event_id) is Claim.NEW
    async with backend.uow() as uow:
        assert await claim(uow, consumer, event_id) is Claim.DUPLICATE
        assert await claim(uow, consumer, uuid.uuid4()) is Claim.NEW


async def test_an_inbox_key_is_scoped_and_a_reused_id_on_another_message_collides(
    backend: Backend,
) -> None:
    consumer, event_id = unique("consumer"), uuid.uuid4()
    async with backend.uow() as uow:
        assert await claim(uow, consumer, event_id) is Claim.NEW
        # the same id on another topic (or from another producer) is another message
        assert await claim(uow, consumer, event_id, scope="other-topic|producer") is Claim.NEW
    async with backend.uow() as uow:
        assert await claim(uow, consumer, event_id, fingerprint="OrderPlaced|o-2") is (
            Claim.COLLISION
        )
        assert await claim(uow, consumer, event_id) is Claim.DUPLICATE


async def test_claiming_many_answers_as_claiming_each_in_turn(backend: Backend) -> None:
    consumer = unique("consumer")
    before, reused, fresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with backend.uow() as uow:
        assert await claim(uow, consumer, before) is Claim.NEW
        assert await claim(uow, consumer, reused) is Claim.NEW
    entry = partial(InboxEntry, scope="topic|producer", fingerprint="OrderPlaced|o-1")
    batch = [
        entry(fresh),
        entry(before),  # committed earlier: a duplicate
        entry(fresh),  # twice in one batch: the second is a duplicate
        entry(reused, fingerprint="OrderPlaced|o-2"),  # another message, same id: collision
        entry(fresh, scope="other|producer"),  # another scope: another message
        entry(fresh, fingerprint="OrderPlaced|o-3"),  # reused within the batch: collision
    ]
    async with backend.uow() as uow:
        claims = await uow.inbox.claim_many(consumer, batch)
        assert await uow.inbox.claim_many(consumer, []) == []
    assert claims == [
        Claim.NEW,
        Claim.DUPLICATE,
        Claim.DUPLICATE,
        Claim.COLLISION,
        Claim.NEW,
        Claim.COLLISION,
    ]
    async with backend.uow() as uow:  # what the batch claimed is committed
        assert await claim(uow, consumer, fresh) is Claim.DUPLICATE
        assert await claim(uow, consumer, fresh, scope="other|producer") is Claim.DUPLICATE


async def test_an_inbox_made_before_scopes_is_widened_and_keeps_its_rows(
    pg_pool: asyncpg.Pool,
) -> None:
    old = uuid.uuid4()
    await pg_pool.execute(
        "CREATE TABLE inbox (consumer text NOT NULL, event_id uuid NOT NULL,"
        " processed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, event_id))"
    )
    await pg_pool.execute("INSERT INTO inbox (consumer, event_id) VALUES ('c', $1)", old)
    await install_schema(pg_pool)
    await install_schema(pg_pool)  # and again: idempotent
    key = await pg_pool.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'inbox'::regclass AND contype = 'p'"
    )
    assert key == "PRIMARY KEY (consumer, scope, event_id)"
    assert await pg_pool.fetchval("SELECT scope FROM inbox WHERE event_id = $1", old) == ""
    async with PostgresUnitOfWork(pg_pool) as uow:
        assert await claim(uow, "c", old) is Claim.NEW


async def test_rollback_leaves_no_events_snapshots_outbox_or_inbox_rows(backend: Backend) -> None:
    stream, consumer, event_id = unique("s"), unique("consumer"), uuid.uuid4()

    async def failing_unit() -> None:
        async with backend.uow() as uow:
            await uow.events.append(stream, 0, [event(1)])
            await uow.events.save_snapshot(Snapshot(stream, 1, 1, {}, datetime.now(UTC)))
            await uow.outbox.append(unique("topic"), envelope(stream))
            assert await claim(uow, consumer, event_id) is Claim.NEW
            raise Boom

    with pytest.raises(Boom):
        await failing_unit()
    async with backend.uow() as uow:
        assert await uow.events.load(stream) == []
        assert await uow.events.latest_snapshot(stream) is None
        assert await claim(uow, consumer, event_id) is Claim.NEW
        assert await uow.events.append(stream, 0, [event(1)]) == 1
    assert await backend.committed_outbox() == []
    assert await load(backend, stream) == [1]


async def test_an_event_id_stored_before_is_a_duplicate_not_a_conflict(backend: Backend) -> None:
    stored = event(1)
    async with backend.uow() as uow:
        await uow.events.append(unique("s"), 0, [stored])
    with pytest.raises(DuplicateEventError):
        async with backend.uow() as uow:
            await uow.events.append(unique("s"), 0, [stored])
