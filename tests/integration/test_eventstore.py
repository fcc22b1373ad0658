"""The event store and repository on real PostgreSQL: racing writers, global positions, audit
loads through snapshots, and old stored versions read through the upcasters."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Self

import asyncpg
import pytest

from schemas.checkout.v2 import OrderPlaced
from schemas.inventory.v1 import StockLevelChanged
from schemas.registry import Message
from shared.aggregate import Aggregate, DomainError
from shared.ports import ConcurrencyError, NewEvent, Snapshot
from shared.postgres import install_schema
from shared.postgres.uow import PostgresUnitOfWork
from shared.repository import EventSourcedRepository
from tests.support import unique

pytestmark = pytest.mark.integration

RACERS = 6  # the pg_pool fixture holds 10 connections


@pytest.fixture
async def pool(pg_pool: asyncpg.Pool) -> asyncpg.Pool:
    await install_schema(pg_pool)
    return pg_pool


class OverReserved(DomainError):
    pass


class StockItem(Aggregate):
    SNAPSHOT_SCHEMA_VERSION = 1

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.on_hand = 0
        self.reserved = 0

    def set_levels(self, on_hand: int, reserved: int) -> None:
        self.ensure_coverable(on_hand, reserved)
        self._record(
            StockLevelChanged(
                sku=self.id, on_hand=on_hand, reserved=reserved, available=on_hand - reserved
            )
        )

    def ensure_coverable(self, on_hand: int, reserved: int) -> None:
        if reserved > on_hand:
            raise OverReserved(f"{reserved} reserved of {on_hand}")

    def apply(self, event: Message) -> None:
        match event:
            case StockLevelChanged(on_hand=on_hand, reserved=reserved):
                self.on_hand, self.reserved = on_hand, reserved
            case _:
                super().apply(event)

    def snapshot_state(self) -> dict[str, Any]:
        return {"on_hand": self.on_hand, "reserved": self.reserved}

    @classmethod
    def from_snapshot(cls, id: str, version: int, state: dict[str, Any]) -> Self:
        item = cls(id)
        item.version, item.on_hand, item.reserved = version, state["on_hand"], state["reserved"]
        return item


class Order(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.currency = ""
        self.line_totals: list[int] = []

    def apply(self, event: Message) -> None:
        match event:
            case OrderPlaced(currency=currency, lines=lines):
                self.currency = currency
                self.line_totals = [line.line_total_cents for line in lines]
            case _:
                super().apply(event)


def new_event(n: int) -> NewEvent:
    return NewEvent(uuid.uuid4(), "Deposited", 1, {"n": n})


async def test_concurrent_appends_to_one_stream_let_exactly_one_writer_win(
    pool: asyncpg.Pool,
) -> None:
    stream = unique("race")
    for round_ in range(4):
        # Every racer holds an open transaction before any appends, so the losers either see
        # the winner's committed row or wait on its uncommitted key: both paths get exercised.
        barrier = asyncio.Barrier(RACERS)

        async def racer(
            n: int, expected: int = round_, barrier: asyncio.Barrier = barrier
        ) -> uuid.UUID:
            mine = new_event(n)
            async with PostgresUnitOfWork(pool) as uow:
                await barrier.wait()
                await uow.events.append(stream, expected, [mine])
            return mine.event_id

        outcomes = await asyncio.gather(*(racer(n) for n in range(RACERS)), return_exceptions=True)
        winners = [o for o in outcomes if isinstance(o, uuid.UUID)]
        losers = [o for o in outcomes if not isinstance(o, uuid.UUID)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, ConcurrencyError) for o in losers), outcomes
        async with PostgresUnitOfWork(pool) as uow:
            stored = await uow.events.load(stream)
        assert [e.stream_version for e in stored] == list(range(1, round_ + 2))
        assert stored[-1].event_id == winners[0]


async def test_global_position_increases_with_every_committed_append(pool: asyncpg.Pool) -> None:
    streams = [unique("s") for _ in range(3)]
    order: list[tuple[str, int]] = []
    for version in range(3):
        for stream in streams:
            async with PostgresUnitOfWork(pool) as uow:
                await uow.events.append(stream, version, [new_event(version)])
            order.append((stream, version + 1))
    positions: dict[tuple[str, int], int] = {}
    async with PostgresUnitOfWork(pool) as uow:
        for stream in streams:
            for e in await uow.events.load(stream):
                positions[(e.stream_id, e.stream_version)] = e.position
    in_append_order = [positions[key] for key in order]
    assert in_append_order == sorted(set(in_append_order))


async def test_concurrent_writers_to_different_streams_all_win_with_distinct_positions(
    pool: asyncpg.Pool,
) -> None:
    barrier = asyncio.Barrier(RACERS)

    async def writer(stream: str) -> None:
        async with PostgresUnitOfWork(pool) as uow:
            await barrier.wait()
            await uow.events.append(stream, 0, [new_event(1), new_event(2)])

    streams = [unique("s") for _ in range(RACERS)]
    await asyncio.gather(*(writer(s) for s in streams))
    async with PostgresUnitOfWork(pool) as uow:
        loaded = [await uow.events.load(s) for s in streams]
    assert all([e.stream_version for e in events] == [1, 2] for events in loaded)
    positions = [e.position for events in loaded for e in events]
    assert len(set(positions)) == 2 * RACERS
    assert all(events[0].position < events[1].position for events in loaded)


async def test_repository_loads_as_of_a_version_or_a_time_through_snapshots(
    pool: asyncpg.Pool,
) -> None:
    sku = "TEA-001"
    levels = [(10, 0), (10, 4), (12, 4), (12, 1), (20, 1)]
    for n, (on_hand, reserved) in enumerate(levels):
        async with PostgresUnitOfWork(pool) as uow:
            repo = EventSourcedRepository(StockItem, uow.events, snapshot_every=2)
            item = await repo.load(sku) if n else StockItem(sku)
            item.set_levels(on_hand, reserved)
            await repo.save(item)
    async with PostgresUnitOfWork(pool) as uow:
        recorded = [e.recorded_at for e in await uow.events.load(sku)]
        snapshots = [await uow.events.latest_snapshot(sku, up_to_version=v) for v in (3, 5)]
        assert [s.stream_version for s in snapshots if s] == [2, 4]
        # Doctor the snapshot at version 4, so each load below shows whether it used it.
        await uow.events.save_snapshot(
            Snapshot(
                sku,
                4,
                StockItem.SNAPSHOT_SCHEMA_VERSION,
                {"on_hand": 99, "reserved": 9},
                recorded[3],
            )
        )
    async with PostgresUnitOfWork(pool) as uow:
        repo = EventSourcedRepository(StockItem, uow.events)
        latest = await repo.load(sku)
        at_v4 = await repo.load(sku, up_to_version=4)
        at_v3 = await repo.load(sku, up_to_version=3)
        at_t4 = await repo.load(sku, as_of=recorded[3])
        at_t3 = await repo.load(sku, as_of=recorded[2])
        at_t1 = await repo.load(sku, as_of=recorded[0])
    assert (latest.version, latest.on_hand, latest.reserved) == (5, 20, 1)  # snapshot + tail
    assert (at_v4.version, at_v4.on_hand, at_v4.reserved) == (4, 99, 9)  # the snapshot itself
    assert (at_v3.version, at_v3.on_hand, at_v3.reserved) == (3, 12, 4)
    assert (at_t4.version, at_t4.on_hand, at_t4.reserved) == (4, 99, 9)
    # Recorded before the snapshot's last event: the snapshot is ignored and history replayed.
    assert (at_t3.version, at_t3.on_hand, at_t3.reserved) == (3, 12, 4)
    assert (at_t1.version, at_t1.on_hand, at_t1.reserved) == (1, 10, 0)


async def test_a_stale_aggregate_save_surfaces_the_concurrency_error(pool: asyncpg.Pool) -> None:
    sku = "TEA-002"
    async with PostgresUnitOfWork(pool) as uow:
        item = StockItem(sku)
        item.set_levels(5, 0)
        assert await EventSourcedRepository(StockItem, uow.events).save(item) == 1
    async with PostgresUnitOfWork(pool) as uow:
        stale = await EventSourcedRepository(StockItem, uow.events).load(sku)
    async with PostgresUnitOfWork(pool) as uow:
        fresh = await EventSourcedRepository(StockItem, uow.events).load(sku)
        fresh.set_levels(5, 1)
        assert await EventSourcedRepository(StockItem, uow.events).save(fresh) == 2
    stale.set_levels(5, 2)

    async def save_stale() -> None:
        async with PostgresUnitOfWork(pool) as uow:
            await EventSourcedRepository(StockItem, uow.events).save(stale)

    with pytest.raises(ConcurrencyError):
        await save_stale()


async def test_an_event_stored_under_an_old_schema_version_loads_upcast(
    pool: asyncpg.Pool,
) -> None:
    order_id = unique("order")
    v1_payload = {
        "order_id": order_id,
        "customer_id": "cust-1",
        "lines": [
            {"sku": "TEA-001", "quantity": 2, "unit_price_cents": 450},
            {"sku": "MUG-002", "quantity": 1, "unit_price_cents": 1200},
        ],
        "total_cents": 2100,
    }
    async with PostgresUnitOfWork(pool) as uow:
        await uow.events.append(order_id, 0, [NewEvent(uuid.uuid4(), "OrderPlaced", 1, v1_payload)])
    async with PostgresUnitOfWork(pool) as uow:
        stored = await uow.events.load(order_id)
        order = await EventSourcedRepository(Order, uow.events).load(order_id)
    assert (stored[0].type, stored[0].version) == ("OrderPlaced", 1)
    assert (order.version, order.currency, order.line_totals) == (1, "EUR", [900, 1200])
