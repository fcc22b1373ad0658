"""Event-store appends/s with 8 concurrent writers, next to two same-run baselines.

What is measured, for each contender: WRITERS writers each make APPENDS_PER_WRITER appends;
an append is one committed transaction holding one event (~250-byte JSON payload). Each writer
fills streams of EVENTS_PER_STREAM events (versions 1..5, so every append after the first of a
stream states an expected version that must already exist), then starts a new stream.

- ours: `PostgresUnitOfWork` + `PostgresEventStore.append`, 8 asyncio tasks on one pool;
- raw asyncpg: one autocommit single-row INSERT per append into a table with the same key,
  8 asyncio tasks on one pool (the floor: no transaction block, no version check);
- eventsourcing 9.5.6: `PostgresApplicationRecorder.insert_events`, 8 threads sharing a
  datastore with 8 pooled psycopg3 connections.

Each contender gets its own fresh database on the POSTGRES_DSN server (dropped afterwards) and a
short warm-up; then ROUNDS timed rounds run the contenders in turn, and the median round counts.
The library's recorder, by design, also NOTIFYs and takes an EXCLUSIVE lock on its table per
insert (gap-free notification ids), which serialises its writers; ours relies on the primary
key alone, so writers to different streams never wait for each other.
Run: `python -m bench.bench_eventstore` (BENCH_APPENDS_PER_WRITER to change the count).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg
import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from bench.report import Figure, print_figures
from shared.ports import NewEvent
from shared.postgres import create_pool, install_schema
from shared.postgres.uow import PostgresUnitOfWork

WRITERS = 8
APPENDS_PER_WRITER = int(os.environ.get("BENCH_APPENDS_PER_WRITER", "200"))
ROUNDS = 3
WARMUP_PER_WRITER = 25
EVENTS_PER_STREAM = 5
PAYLOAD = {
    "order_id": "order-0000000000000000",
    "customer_id": "customer-000000000000",
    "lines": [{"sku": "TEA-001", "quantity": 2, "unit_price_cents": 450, "line_total_cents": 900}]
    * 2,
    "currency": "EUR",
    "total_cents": 1800,
}
PAYLOAD_BYTES = orjson.dumps(PAYLOAD)

RAW_SCHEMA = """
CREATE TABLE raw_events (
    position       bigint GENERATED ALWAYS AS IDENTITY,
    stream_id      text    NOT NULL,
    stream_version integer NOT NULL,
    payload        jsonb   NOT NULL,
    PRIMARY KEY (stream_id, stream_version)
)
"""


def with_database(dsn: str, name: str) -> str:
    return f"{dsn.rpartition('/')[0]}/{name}"


def versions(appends: int) -> list[tuple[str, int]]:
    """(stream, version) for one writer's appends: streams of EVENTS_PER_STREAM events."""
    out: list[tuple[str, int]] = []
    while len(out) < appends:
        stream = str(uuid.uuid4())
        out += [(stream, v) for v in range(1, EVENTS_PER_STREAM + 1)]
    return out[:appends]


class Contender(Protocol):
    async def run(self, appends_per_writer: int) -> float:
        """Make the appends with WRITERS concurrent writers; return appends/s."""
        ...

    async def close(self) -> None: ...


async def tasks_rate(append: Callable[[str, int], Awaitable[None]], appends: int) -> float:
    async def writer() -> None:
        for stream, version in versions(appends):
            await append(stream, version)

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return WRITERS * appends / (time.perf_counter() - start)


class Ours:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def start(cls, dsn: str) -> Ours:
        pool = await create_pool(dsn, min_size=WRITERS, max_size=WRITERS)
        await install_schema(pool)
        return cls(pool)

    async def append(self, stream: str, version: int) -> None:
        event = NewEvent(uuid.uuid4(), "OrderPlaced", 2, PAYLOAD)
        async with PostgresUnitOfWork(self.pool) as uow:
            await uow.events.append(stream, version - 1, [event])

    async def run(self, appends_per_writer: int) -> float:
        return await tasks_rate(self.append, appends_per_writer)

    async def close(self) -> None:
        await self.pool.close()


class RawAsyncpg:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.payload = PAYLOAD_BYTES.decode()

    @classmethod
    async def start(cls, dsn: str) -> RawAsyncpg:
        pool = await create_pool(dsn, min_size=WRITERS, max_size=WRITERS)
        await pool.execute(RAW_SCHEMA)
        return cls(pool)

    async def append(self, stream: str, version: int) -> None:
        await self.pool.execute(
            "INSERT INTO raw_events (stream_id, stream_version, payload)"
            " VALUES ($1, $2, $3::jsonb)",
            stream,
            version,
            self.payload,
        )

    async def run(self, appends_per_writer: int) -> float:
        return await tasks_rate(self.append, appends_per_writer)

    async def close(self) -> None:
        await self.pool.close()


class EventsourcingLibrary:
    def __init__(self, dsn: str) -> None:
        url = urlsplit(dsn)
        self.datastore = PostgresDatastore(
            dbname=url.path.lstrip("/"),
            host=url.hostname or "127.0.0.1",
            port=url.port or 5432,
            user=url.username or "",
            password=url.password or "",
            pool_size=WRITERS,
        )
        self.recorder = PostgresApplicationRecorder(self.datastore)
        self.recorder.create_table()

    @classmethod
    async def start(cls, dsn: str) -> EventsourcingLibrary:
        return await asyncio.to_thread(cls, dsn)

    def writer(self, appends: int) -> None:
        for stream, version in versions(appends):
            event = StoredEvent(uuid.UUID(stream), version, "bench:OrderPlaced", PAYLOAD_BYTES)
            self.recorder.insert_events([event])

    def threads_rate(self, appends: int) -> float:
        threads = [threading.Thread(target=self.writer, args=(appends,)) for _ in range(WRITERS)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return WRITERS * appends / (time.perf_counter() - start)

    async def run(self, appends_per_writer: int) -> float:
        return await asyncio.to_thread(self.threads_rate, appends_per_writer)

    async def close(self) -> None:
        await asyncio.to_thread(self.datastore.close)


async def main() -> None:
    admin_dsn = os.environ.get(
        "POSTGRES_DSN", "postgresql://leadline:leadline@127.0.0.1:5433/postgres"
    )
    names: dict[str, Callable[[str], Awaitable[Contender]]] = {
        "ours": Ours.start,
        "raw": RawAsyncpg.start,
        "library": EventsourcingLibrary.start,
    }
    admin = await asyncpg.connect(admin_dsn)
    databases: list[str] = []
    contenders: dict[str, Contender] = {}
    rates: dict[str, list[float]] = {name: [] for name in names}
    try:
        for name, start in names.items():
            database = f"bench_{uuid.uuid4().hex[:12]}"
            await admin.execute(f'CREATE DATABASE "{database}"')
            databases.append(database)
            contenders[name] = await start(with_database(admin_dsn, database))
            await contenders[name].run(WARMUP_PER_WRITER)
        # Rounds interleave the contenders, so a burst of load from a neighbour on this shared
        # machine hits all of them rather than skewing one figure.
        for _ in range(ROUNDS):
            for name, contender in contenders.items():
                rates[name].append(await contender.run(APPENDS_PER_WRITER))
    finally:
        for contender in contenders.values():
            await contender.close()
        for database in databases:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    ours, raw, library = (statistics.median(rates[n]) for n in ("ours", "raw", "library"))
    unit = "appends/s"
    what = f"PostgresEventStore, {WRITERS} writers"
    print_figures(
        f"event store: appends/s, each a committed transaction of one event"
        f" (median of {ROUNDS} interleaved rounds of {WRITERS} x {APPENDS_PER_WRITER})",
        [
            Figure(what, ours, unit, f"raw asyncpg INSERT, {WRITERS} writers", raw),
            Figure(what, ours, unit, f"eventsourcing 9.5.6 recorder, {WRITERS} threads", library),
        ],
    )
    for name, values in rates.items():
        print(f"  {name:8s} per round: {', '.join(f'{v:,.0f}' for v in values)}")


if __name__ == "__main__":
    asyncio.run(main())
