"""Projection records/s (the orders view), next to a raw aiokafka consumer that upserts the same
rows in one transaction per polled batch, in the same run.

The workload is N records: per order, OrderPlaced (v2, stream_version 1, one to three lines),
StockReserved, PaymentAuthorized, OrderConfirmed (stream_version 2) and ReceiptIssued, each
enveloped by its producer's name, keyed by order id, on checkout/inventory/payments/receipts
.events of a fresh prefixed copy of the catalogue (six partitions each), produced once by an
idempotent acks=all producer before anything reads. Then, in turn, on those same records, each
contender with a consumer group of its own and a fresh database of its own:

- raw, batched (the goal's baseline): an AIOKafkaConsumer (manual commits, read_committed,
  max_poll_records as the service's) that decodes each envelope with orjson and, per
  polled batch, in ONE
  transaction: claims every event id in the inbox with one `INSERT … SELECT unnest(…) ON
  CONFLICT DO NOTHING RETURNING`, then, for the new ones, `executemany` of the orders view's own
  statements (its very SQL text: each upsert with the event's timeline row in one statement,
  into a plain copy of its tables and inbox); offsets committed after the transaction.
- raw, per statement (context): the same loop and transaction per polled batch, but one round
  trip per record: its inbox claim, then its statement.
- ours: the projection's orders view as the service runs it: `bootstrap.runtime()` (the pool,
  every view's schema, the runners from `consumers.view_consumers` with the service's
  `ConsumerSettings`) with the orders view's runner alone, no monitor and no housekeeping, so
  the figure is one view's (the other three read other records and write other tables).
  Per transaction: one inbox claim for all its records; per record: envelope and payload
  validated by pydantic, its statement (upsert and timeline row in one) written to the unit of
  work, which runs one executemany per statement before the commit; up to
  TRANSACTION_BATCH records of one partition per transaction, partitions in parallel. The
  runner's poll shares max_poll_records (the service's setting) between its assigned partitions
  (4 topics x 6 = 24); the tx column shows how many records a transaction really held. The raw
  consumers poll the same max_poll_records.

How it is timed: every 10 ms the bench reads how many records the contender has committed
(ours: `leadline_messages_handled_total{outcome="applied"}` of its consumer; raw: its own count
after each commit). The rate runs from the first poll that sees any records applied to the one
that sees all N (those the first saw are left out), so the group join and the first fetch are
out for every contender. Afterwards every contender's inbox must hold N rows, and its orders and
timeline tables must equal ours row for row; transactions are counted as the distinct
`processed_at` (transaction start) times of its inbox rows.

The databases and every topic under the prefix are deleted at the end. One round each; the
machines are shared, so compare the ratio, not the absolute numbers.
Run: `python -m bench.bench_projection [--records N] [--transaction-batch B]`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.report import Figure, print_figures
from schemas.catalogue import SAGA_PARTITIONS
from schemas.checkout.v1 import OrderConfirmed
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.inventory.v1 import StockLine, StockReserved
from schemas.payments.v1 import PaymentAuthorized
from schemas.receipts.v1 import ReceiptIssued
from schemas.registry import Message
from services.projection.bootstrap import runtime
from services.projection.consumers import ViewConsumers

# the view's own statements: the baseline writes what the view writes, only the machinery differs
from services.projection.orders import _PAYMENT, _PLACED, _RECEIPT, _RESERVATION, _STATUS
from services.projection.orders import VIEW as ORDERS
from services.projection.settings import ProjectionSettings
from services.projection.store import qualified, table_rows
from shared.envelope import Envelope
from shared.kafka.admin import catalogue_specs, ensure_topics
from shared.observability.logging import configure_logging
from shared.observability.metrics import DEAD_LETTERS, MESSAGES_HANDLED
from shared.postgres import install_schema

POSTGRES_DEFAULT = "postgresql://leadline:leadline@127.0.0.1:5433/postgres"
BATCH_DEFAULT = ProjectionSettings.model_fields["transaction_batch"].default
PER_ORDER = 5  # records per order
POLL = 0.01  # seconds between looks at a contender's progress
SKUS = ("TEA-001", "TEA-002", "COF-001", "MUG-010", "POT-200")
UPSERTS = (_PLACED, _STATUS, _RESERVATION, _PAYMENT, _RECEIPT)  # the order they run per batch
RAW_CLAIM = """
INSERT INTO {s}.inbox (consumer, scope, event_id, fingerprint)
SELECT $1, * FROM unnest($2::text[], $3::uuid[], $4::text[])
ON CONFLICT DO NOTHING RETURNING event_id
"""
RAW_CLAIM_ONE = """
INSERT INTO {s}.inbox (consumer, scope, event_id, fingerprint) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING RETURNING 1
"""

Produced = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # catalogue topic, key, value, headers
Mode = Literal["executemany", "execute"]


def order_records(i: int, order: str, rng: random.Random) -> list[Produced]:
    lines = []
    for sku in rng.sample(SKUS, rng.randint(1, 3)):
        quantity, price = rng.randint(1, 4), rng.choice((450, 1200, 2990))
        lines.append(
            OrderLine(
                sku=sku,
                quantity=quantity,
                unit_price_cents=price,
                line_total_cents=price * quantity,
            )
        )
    total, customer = sum(line.line_total_cents for line in lines), f"c-{i % 997}"
    steps: list[tuple[str, str, Message, int | None]] = [
        (
            "checkout.events",
            "checkout",
            OrderPlaced(
                order_id=order, customer_id=customer, lines=lines, currency="EUR", total_cents=total
            ),
            1,
        ),
        (
            "inventory.events",
            "inventory",
            StockReserved(
                order_id=order, lines=[StockLine(sku=x.sku, quantity=x.quantity) for x in lines]
            ),
            None,
        ),
        (
            "payments.events",
            "payment_provider",
            PaymentAuthorized(order_id=order, payment_id=f"p-{i}", amount_cents=total),
            None,
        ),
        ("checkout.events", "checkout", OrderConfirmed(order_id=order), 2),
        (
            "receipts.events",
            "receipts",
            ReceiptIssued(
                order_id=order,
                customer_id=customer,
                receipt_number=f"LL-{i:08d}",
                currency="EUR",
                subtotal_cents=total,
                tax_cents=0,
                total_cents=total,
                issued_at=datetime.now(UTC),
            ),
            None,
        ),
    ]
    out: list[Produced] = []
    for topic, producer, message, stream_version in steps:
        env = Envelope.wrap(message, key=order, producer=producer)
        if stream_version is not None:
            env = env.model_copy(update={"stream_version": stream_version})
        out.append((topic, order.encode(), env.to_bytes(), env.headers()))
    return out


async def produce(bootstrap: str, prefix: str, records: list[Produced]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(prefix + topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Result:
    records: int  # in the timed interval
    seconds: float
    transactions: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds


async def timed(
    count: Callable[[], float],
    total: int,
    what: str,
    timeout: float,
    task: asyncio.Task[Any] | None = None,
) -> tuple[int, float]:
    """(records, seconds) from the first poll that sees records applied to the one that sees
    `total`; the records the first poll saw are not counted."""
    deadline = time.monotonic() + timeout
    first: tuple[float, float] | None = None
    while (n := count()) < total:
        if task is not None and task.done():
            task.result()
            raise RuntimeError(f"{what} stopped at {n:.0f} of {total} records")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {n:.0f} of {total} records within {timeout:.0f}s")
        if n and first is None:
            first = (time.perf_counter(), n)
        await asyncio.sleep(POLL)
    end = time.perf_counter()
    if first is None:
        raise RuntimeError(f"{what} applied all {total} records between two polls: raise N")
    return total - int(first[1]), end - first[0]


def applied(consumer: str) -> float:
    return sum(
        s.value
        for metric in MESSAGES_HANDLED.collect()
        for s in metric.samples
        if s.name.endswith("_total")
        and s.labels["consumer"] == consumer
        and s.labels["outcome"] == "applied"
    )


def dead_letters(consumer: str) -> float:
    return sum(
        s.value
        for metric in DEAD_LETTERS.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.labels["consumer"] == consumer
    )


async def inbox_check(pool: asyncpg.Pool, total: int) -> int:
    """Transactions, as distinct transaction start times (`now()`) of the inbox rows."""
    row = await pool.fetchrow(
        f"SELECT count(*) AS n, count(DISTINCT processed_at) AS tx FROM {ORDERS.schema}.inbox"
    )
    assert row is not None
    assert row["n"] == total, (row, total)
    return int(row["tx"])


async def view_rows(pool: asyncpg.Pool) -> dict[str, list[dict[str, object]]]:
    async with pool.acquire() as conn:
        return {t: await table_rows(conn, ORDERS.schema, t, by) for t, by in ORDERS.rows}


async def run_ours(
    bootstrap: str, prefix: str, dsn: str, batch: int, total: int, timeout: float
) -> tuple[Result, dict[str, list[dict[str, object]]]]:
    settings = ProjectionSettings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        database_url=dsn,
        consumer_group=f"{prefix}projection",
        transaction_batch=batch,
    )
    service = runtime(settings)
    every_view = service.make_consumer
    assert every_view is not None

    def orders_only(pool: asyncpg.Pool) -> ViewConsumers:
        consumers = every_view(pool)
        assert isinstance(consumers, ViewConsumers)
        return ViewConsumers({ORDERS.name: consumers.runners[ORDERS.name]})

    service = dataclasses.replace(
        service, make_consumer=orders_only, make_workers={}, housekeeping=None
    )
    name = ORDERS.consumer_name(settings.consumer_group)
    before = applied(name)
    await service.start()
    try:
        consumers = service.consumer
        assert isinstance(consumers, ViewConsumers)
        assert list(consumers.runners) == [ORDERS.name]
        # the runtime runs the loop in a task of its own: a dead loop shows as the timeout
        records, seconds = await timed(lambda: applied(name) - before, total, "ours", timeout)
        assert dead_letters(name) == 0, "the orders view dead-lettered records"
        transactions = await inbox_check(service.pool, total)
        rows = await view_rows(service.pool)
    finally:
        await service.stop()
    return Result(records, seconds, transactions), rows


@dataclass(frozen=True)
class Decoded:
    scope: str
    event_id: uuid.UUID
    fingerprint: str
    upsert: str
    args: tuple[Any, ...]
    timeline: tuple[Any, ...]


def decode(record: Any) -> Decoded:
    """What the orders view writes for one record, from the envelope's JSON (no validation)."""
    env = orjson.loads(record.value)
    p, type_, event_id = env["payload"], env["type"], uuid.UUID(env["event_id"])
    order, detail = p["order_id"], None
    args: tuple[Any, ...]
    match type_:
        case "OrderPlaced":
            upsert = _PLACED
            args = (
                order,
                p["customer_id"],
                env["stream_version"],
                datetime.fromisoformat(env["occurred_at"]),
                p["currency"],
                p["total_cents"],
                orjson.dumps(p["lines"]).decode(),
            )
        case "OrderConfirmed":
            upsert, args = _STATUS, (order, "confirmed", None, env["stream_version"])
        case "StockReserved":
            upsert, args = _RESERVATION, (order, "reserved", None)
        case "PaymentAuthorized":
            upsert, args = _PAYMENT, (order, "authorized", p["payment_id"], None)
        case "ReceiptIssued":
            upsert, detail = _RECEIPT, p["receipt_number"]
            issued = datetime.fromisoformat(p["issued_at"])
            args = (order, p["customer_id"], p["receipt_number"], p["total_cents"], issued)
        case _:
            raise ValueError(f"not in the workload: {type_}")
    at = datetime.fromisoformat(env["occurred_at"])
    return Decoded(
        scope=f"{record.topic}|{env['producer']}",
        event_id=event_id,
        fingerprint=f"{type_}|{env['key']}",
        upsert=upsert,
        args=args,
        timeline=(order, event_id, at, type_, detail),
    )


async def write_batched(conn: Any, consumer: str, rows: Sequence[Decoded]) -> None:
    s = ORDERS.schema
    claimed = await conn.fetch(
        qualified(RAW_CLAIM, s),
        consumer,
        [r.scope for r in rows],
        [r.event_id for r in rows],
        [r.fingerprint for r in rows],
    )
    new = {c["event_id"] for c in claimed}
    fresh = [r for r in rows if r.event_id in new]
    # grouped by statement: the view's upserts give the same row in any order (stream versions)
    for upsert in UPSERTS:
        args = [r.args + r.timeline[1:] for r in fresh if r.upsert is upsert]
        if args:
            await conn.executemany(qualified(upsert, s), args)


async def write_each(conn: Any, consumer: str, rows: Sequence[Decoded]) -> None:
    s = ORDERS.schema
    for r in rows:
        if await conn.fetchval(
            qualified(RAW_CLAIM_ONE, s), consumer, r.scope, r.event_id, r.fingerprint
        ):
            await conn.execute(qualified(r.upsert, s), *r.args, *r.timeline[1:])


async def run_raw(
    bootstrap: str, prefix: str, dsn: str, mode: Mode, total: int, timeout: float
) -> tuple[Result, int, dict[str, list[dict[str, object]]]]:
    """Also returns how many batches it polled (one transaction each)."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, ssl=False)
    assert pool is not None
    await install_schema(pool, ORDERS.ddl(ORDERS.schema))
    name = f"{prefix}raw-{mode}"
    consumer = AIOKafkaConsumer(
        *(prefix + t for t in ORDERS.topics),
        bootstrap_servers=bootstrap,
        group_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=ProjectionSettings.model_fields["max_poll_records"].default,
    )
    write = write_batched if mode == "executemany" else write_each
    done, batches = [0], [0]

    async def loop() -> None:
        while done[0] < total:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                continue
            rows = [decode(r) for records in batch.values() for r in records]
            async with pool.acquire() as conn, conn.transaction():
                await write(conn, name, rows)
            done[0] += len(rows)
            batches[0] += 1
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})

    try:
        await consumer.start()
        task = asyncio.create_task(loop())
        try:
            records, seconds = await timed(lambda: done[0], total, f"raw {mode}", timeout, task)
            await task
        finally:
            task.cancel()
        transactions = await inbox_check(pool, total)
        assert transactions <= batches[0], (transactions, batches[0])
        rows = await view_rows(pool)
    finally:
        await consumer.stop()
        await pool.close()
    return Result(records, seconds, transactions), batches[0], rows


async def bench(records_n: int, batch: int, bootstrap: str, postgres: str) -> None:
    configure_logging("bench", "WARNING")
    # a fresh topic's leaders settle during the first sends: retried, harmless, one line each
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    run = uuid.uuid4().hex[:8]
    prefix = f"bench.projection.{run}."
    orders_n = max(1, records_n // PER_ORDER)
    total, timeout = orders_n * PER_ORDER, 120 + orders_n * PER_ORDER / 100
    rng = random.Random(run)
    records = [
        r for i in range(orders_n) for r in order_records(i, f"o-{run}-{i:06d}", rng)
    ]  # per order, in saga order: what the topics would hold
    databases = {c: f"bench_projection_{run}_{c}" for c in ("ours", "many", "each")}
    dsn = {c: f"{postgres.rpartition('/')[0]}/{db}" for c, db in databases.items()}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    pg_admin = await asyncpg.connect(postgres)
    try:
        for db in databases.values():
            await pg_admin.execute(f'CREATE DATABASE "{db}"')
        await ensure_topics(bootstrap, catalogue_specs(prefix))
        await produce(bootstrap, prefix, records)
        many, many_batches, many_rows = await run_raw(
            bootstrap, prefix, dsn["many"], "executemany", total, timeout
        )
        each, each_batches, each_rows = await run_raw(
            bootstrap, prefix, dsn["each"], "execute", total, timeout
        )
        ours, ours_rows = await run_ours(bootstrap, prefix, dsn["ours"], batch, total, timeout)
    finally:
        for db in databases.values():
            await pg_admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await pg_admin.close()
        await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(prefix)])
        await admin.close()
    assert many_rows == ours_rows, "raw executemany wrote other rows than the orders view"
    assert each_rows == ours_rows, "raw per-statement wrote other rows than the orders view"
    assert len(ours_rows["orders"]) == orders_n
    assert len(ours_rows["timeline"]) == total

    def ours_label(r: Result) -> str:
        return (
            f"orders view, transaction_batch {batch}: {r.records:,} in {r.seconds:.2f}s,"
            f" {r.transactions:,} tx ({total / r.transactions:.1f}/tx)"
        )

    def raw_label(what: str, r: Result, batches: int) -> str:
        return (
            f"raw aiokafka, 1 tx per poll, {what}: {r.records:,} in {r.seconds:.2f}s,"
            f" {batches:,} polls ({total / batches:.0f}/tx)"
        )

    print_figures(
        f"projection, orders view: {total:,} records ({orders_n:,} orders) on"
        f" {len(ORDERS.topics)} topics x {SAGA_PARTITIONS} partitions,"
        " goal >= 0.5x the batched baseline",
        [
            Figure(
                ours_label(ours),
                ours.rate,
                "rec/s",
                raw_label("executemany", many, many_batches),
                many.rate,
            ),
            Figure(
                ours_label(ours),
                ours.rate,
                "rec/s",
                raw_label("per statement", each, each_batches),
                each.rate,
            ),
        ],
    )


def main(
    records: int = typer.Option(
        20_000, envvar="BENCH_PROJECTION_RECORDS", min=PER_ORDER * 2, help="records (N)"
    ),
    transaction_batch: int = typer.Option(
        BATCH_DEFAULT, min=1, max=1000, help="the projection's records per transaction"
    ),
    kafka: str = typer.Option("127.0.0.1:9092", envvar="KAFKA_BOOTSTRAP_SERVERS"),
    postgres: str = typer.Option(POSTGRES_DEFAULT, envvar="POSTGRES_DSN"),
) -> None:
    asyncio.run(bench(records, transaction_batch, kafka, postgres))


if __name__ == "__main__":
    typer.run(main)
