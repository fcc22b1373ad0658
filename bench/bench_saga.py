"""Saga transitions/s of the orchestrator's faust processor, next to a bare faust agent reading
the same records in the same run.

The workload is N orders' worth of what the other services would send the saga: per order
OrderPlaced (checkout.events, schemas.checkout.v2), StockReserved (inventory.events),
PaymentAuthorized (upstream payments.events: the processor's re-key agent moves it onto
orchestrator.payments first), OrderConfirmed (checkout.events), ReceiptIssued (receipts.events);
each enveloped, keyed by order id, produced by an idempotent acks=all aiokafka producer with its
default (murmur2) partitioner onto a prefixed copy of the catalogue.

Why in rounds: the saga agent reads all its topics at once and faust interleaves them in no set
order, while a reply the saga cannot use yet (StockReserved before its OrderPlaced) is ignored
for good, so one backlog of all five types would leave sagas stuck. Instead, one round per
message type, in saga order, and in each round the processor works through a backlog of N:

1. its fetching from the source topics and from upstream payments.events is paused (faust's
   `consumer.pause_partitions`: the records wait on the broker, nothing else changes),
2. the round's N records are produced and acknowledged,
3. fetching resumes; the round is timed from its first transition to its N-th.

The first transition is timestamped by the saga view writer (subclassed here: the processor calls
`put` once per applied message, after its table write, before its commands are sent), so the
resume latency, the group join and the table's recovery stay out of the figure; the N-th is when
`leadline_saga_transitions_total` has moved by N (the view's writes cannot count them: the first
deadline tick after an assignment writes every saga held to the view once more). The payment round's
re-key sends are in it (all but the first): they share the processor's loop, as in the service.
Between rounds, untimed, every saga must have reached the round's status in the table; at the
end `leadline_saga_transitions_total` must have moved by N per type, the saga view in PostgreSQL
must show N completed, and nothing may have been dead-lettered.

The processor runs as the service runs it: `Processor` with a `ViewWriter` on a database of its
own, a rocksdb table in a temporary directory, an app id of its own, its timeouts raised to an
hour so that no deadline fires mid-run. Figure: 5N transitions / the sum of the rounds' times.

Baseline: a bare faust app with the processor's settings that matter (at least once, raw
serializers, the same idempotent transport, rocksdb, six partitions, commit interval), one agent
over the same five source topics and a changelog-backed Table keyed by order id counting records
per key (faust's plain Table: the storage work minus the saga). With an app id and group of its
own it reads the 5N records the saga applied (orchestrator.payments holds the re-keyed payments)
as one backlog, timed from its first record to its last, stamped after the table write as on
the saga's side. What the saga does beyond that (reading the N upstream payments, sending 3N
commands and N re-keyed records and awaiting each send, the saga view) is what it costs.

Every topic under the prefix and the database are deleted at the end. One run each; the
machines are shared, so compare the ratio, not the absolute numbers.
Run: `python -m bench.bench_saga [--orders N]` (or BENCH_SAGA_ORDERS=N).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import faust
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.contrib.asgi import bind_to_running_loop
from faust.types import TP
from prometheus_client import REGISTRY

from bench.report import Figure, print_figures
from schemas.catalogue import SAGA_PARTITIONS
from schemas.checkout.v1 import OrderConfirmed
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.inventory.v1 import StockLine, StockReserved
from schemas.payments.v1 import PaymentAuthorized
from schemas.receipts.v1 import ReceiptIssued
from schemas.registry import Message
from services.orchestrator.consumers import Topics
from services.orchestrator.processor import Processor
from services.orchestrator.saga import Saga
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.store import SCHEMA
from services.orchestrator.transport import Transport
from services.orchestrator.view import ViewWriter
from shared.envelope import Envelope
from shared.kafka.admin import catalogue_specs, ensure_topics
from shared.postgres import install_schema

POSTGRES_DEFAULT = "postgresql://leadline:leadline@127.0.0.1:5433/postgres"
HOUR = 3600.0
PRICE, SKU = 450, "TEA-001"


@dataclass(frozen=True)
class Round:
    type: str  # what the saga applies
    topic: str  # catalogue name it is produced to
    producer: str  # the service that would send it
    status: str  # where every saga stands after the round


ROUNDS = (
    Round("OrderPlaced", "checkout.events", "checkout", "reserving"),
    Round("StockReserved", "inventory.events", "inventory", "paying"),
    Round("PaymentAuthorized", "payments.events", "payment_provider", "confirming"),
    Round("OrderConfirmed", "checkout.events", "checkout", "receipting"),
    Round("ReceiptIssued", "receipts.events", "receipts", "completed"),
)


def message(type_: str, order: str, i: int) -> Message:
    match type_:
        case "OrderPlaced":
            line = OrderLine(sku=SKU, quantity=1, unit_price_cents=PRICE, line_total_cents=PRICE)
            return OrderPlaced(
                order_id=order,
                customer_id=f"c-{i}",
                lines=[line],
                currency="EUR",
                total_cents=PRICE,
            )
        case "StockReserved":
            return StockReserved(order_id=order, lines=[StockLine(sku=SKU, quantity=1)])
        case "PaymentAuthorized":
            return PaymentAuthorized(order_id=order, payment_id=f"p-{i}", amount_cents=PRICE)
        case "OrderConfirmed":
            return OrderConfirmed(order_id=order)
    return ReceiptIssued(
        order_id=order,
        customer_id=f"c-{i}",
        receipt_number=f"LL-{i:08d}",
        currency="EUR",
        subtotal_cents=PRICE,
        tax_cents=0,
        total_cents=PRICE,
        issued_at=datetime.now(UTC),
    )


class TimedViewWriter(ViewWriter):
    """The service's view writer, timestamping each saga it is handed (one per transition)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.stamps: list[float] = []

    def put(self, saga: Saga) -> None:
        self.stamps.append(time.perf_counter())
        super().put(saga)


async def produce(bootstrap: str, prefix: str, r: Round, orders: list[str]) -> None:
    records = []
    for i, order in enumerate(orders):
        env = Envelope.wrap(message(r.type, order, i), key=order, producer=r.producer)
        records.append((env.to_bytes(), order.encode(), env.headers()))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(prefix + r.topic, value, key=key, headers=headers)
            for value, key, headers in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.01)


def counted(
    view: TimedViewWriter, stamps: int, type_: str, transitions_before: float, n: int
) -> Callable[[], bool]:
    """True once `n` transitions of `type_` were applied (the view's count is checked first:
    it is free, and collecting every metric is not)."""

    def check() -> bool:
        return len(view.stamps) - stamps >= n and transitions(type_) - transitions_before >= n

    return check


async def stamped(stamps: list[float], count: int, what: str, timeout: float) -> None:
    await until(lambda: len(stamps) >= count, what, timeout)


def transitions(type_: str) -> float:
    return REGISTRY.get_sample_value("leadline_saga_transitions_total", {"type": type_}) or 0.0


def dead_letters() -> float:
    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "leadline_dead_letters"
        for s in m.samples
        if s.name.endswith("_total")
    )


async def run_saga(
    bootstrap: str, prefix: str, dsn: str, data_dir: Path, orders: list[str]
) -> list[float]:
    """Each round's seconds, first transition to N-th."""
    n, timeout = len(orders), 120 + len(orders) / 20
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, ssl=False)
    assert pool is not None
    await install_schema(pool, SCHEMA)
    view = TimedViewWriter(pool)
    settings = OrchestratorSettings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        database_url=dsn,
        app_id=f"bench-saga-{uuid.uuid4().hex[:8]}",
        data_dir=data_dir,
        store="rocksdb",
        reserve_timeout=HOUR,
        pay_timeout=HOUR,
        confirm_timeout=HOUR,
        receipt_timeout=HOUR,
    )
    processor = Processor(settings, view)
    topics = Topics.with_prefix(prefix)
    paused = {
        TP(t, p)
        for t in (*topics.sources, topics.payments_upstream)
        for p in range(SAGA_PARTITIONS)
    }
    before = {r.type: transitions(r.type) for r in ROUNDS}
    dead_before = dead_letters()
    tasks = [asyncio.create_task(view.run()), asyncio.create_task(processor.run())]
    seconds = []
    try:
        await until(
            lambda: processor.ready() and paused <= set(processor.app.assignor.assigned_actives()),
            "processor ready with every partition",
            timeout,
        )
        consumer: Any = processor.app.consumer
        for r in ROUNDS:
            consumer.pause_partitions(paused)
            await asyncio.sleep(0.5)  # a fetch in flight hands over what it has
            start = len(view.stamps)
            await produce(bootstrap, prefix, r, orders)
            assert len(view.stamps) == start, "records were applied before the round began"
            applied_before = transitions(r.type)
            consumer.resume_partitions(paused)
            # the transitions, not the view's writes: the first deadline tick after the
            # partitions came writes the sagas already held to the view once more
            await until(counted(view, start, r.type, applied_before, n), f"{n} x {r.type}", timeout)
            seconds.append(time.perf_counter() - view.stamps[start])
            statuses = {Saga.model_validate_json(processor.table[o]).status for o in orders}
            assert statuses == {r.status}, f"after {r.type}: {statuses}"
        applied = {r.type: transitions(r.type) - before[r.type] for r in ROUNDS}
        assert applied == dict.fromkeys(applied, n), applied
        assert dead_letters() == dead_before, "the processor dead-lettered records"
    finally:
        await processor.stop()
        await view.stop()  # its last flush: the view holds every saga's latest state
        await asyncio.gather(*tasks, return_exceptions=True)
        rows = await pool.fetch("SELECT status, count(*) AS n FROM sagas GROUP BY status")
        await pool.close()
    assert {r["status"]: r["n"] for r in rows} == {"completed": n}, rows
    return seconds


class Bare:
    """A faust app with the processor's settings that matter, one counting agent, no saga."""

    def __init__(self, bootstrap: str, app_id: str, data_dir: Path, sources: tuple[str, ...]):
        self.app = app = faust.App(
            app_id,
            broker=f"kafka://{bootstrap}",
            store="rocksdb://",
            datadir=str(data_dir / app_id),
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            topic_replication_factor=1,
            topic_partitions=SAGA_PARTITIONS,
            table_standby_replicas=1,
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            broker_commit_interval=1.0,
            web_enabled=False,
            key_serializer="raw",
            value_serializer="raw",
        )
        app.transport = Transport(app.conf.broker_consumer, app)
        self.counts = app.Table(
            "counts", partitions=SAGA_PARTITIONS, key_type=str, value_type=bytes
        )
        self.stamps: list[float] = []
        topic = app.topic(*sources, key_type=bytes, value_type=bytes)
        app.agent(topic, name="count")(self._count)

    async def _count(self, stream: Any) -> None:
        async for event in stream.events():
            order = event.key.decode()
            self.counts[order] = b"%d" % (int(self.counts.get(order, b"0")) + 1)
            self.stamps.append(time.perf_counter())


async def run_bare(bootstrap: str, prefix: str, data_dir: Path, n: int) -> tuple[int, float]:
    """Records read and seconds, first record to last."""
    sources = Topics.with_prefix(prefix).sources
    total = await records_in(bootstrap, sources)
    app_id = f"{prefix}bench-bare"
    # created before faust starts, as the processor does (faust racing the metadata drops records)
    await ensure_topics(
        bootstrap,
        [
            (f"{app_id}-counts-changelog", SAGA_PARTITIONS, {"cleanup.policy": "compact"}),
            (f"{app_id}-__assignor-__leader", 1, {"cleanup.policy": "compact"}),
        ],
    )
    bare = Bare(bootstrap, app_id, data_dir, sources)
    bind_to_running_loop(bare.app)
    bare.app.finalize()
    await bare.app.start()
    try:
        await stamped(bare.stamps, total, f"{total} records counted", 120 + n / 20)
        counts = [int(v) for v in bare.counts.values()]  # the store closes with the app
    finally:
        await bare.app.stop()
    assert len(counts) == n, len(counts)
    assert set(counts) == {total // n}, set(counts)
    return total, bare.stamps[total - 1] - bare.stamps[0]


async def records_in(bootstrap: str, topics: tuple[str, ...]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(SAGA_PARTITIONS)]
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)
    finally:
        await consumer.stop()


async def bench(orders_n: int, bootstrap: str, postgres: str) -> None:
    run = uuid.uuid4().hex[:8]
    prefix, database = f"bench.saga.{run}.", f"bench_saga_{run}"
    orders = [f"o-{run}-{i:06d}" for i in range(orders_n)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    pg_admin = await asyncpg.connect(postgres)
    await pg_admin.execute(f'CREATE DATABASE "{database}"')
    try:
        await ensure_topics(bootstrap, catalogue_specs(prefix))
        with tempfile.TemporaryDirectory(prefix="bench-saga-") as tmp:
            dsn = f"{postgres.rpartition('/')[0]}/{database}"
            # faust makes one directory level: each app's state goes in tmp/<its app id>
            rounds = await run_saga(bootstrap, prefix, dsn, Path(tmp), orders)
            records, bare = await run_bare(bootstrap, prefix, Path(tmp), orders_n)
    finally:
        await pg_admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await pg_admin.close()
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        await admin.delete_topics(ours)
        await admin.close()

    # rates over intervals: n stamps span n - 1 records' work on either side
    n, base = orders_n, f"bare faust agent + counting Table, {records:,} records in {bare:.2f}s"
    bare_rate = (records - 1) / bare
    figures = [
        Figure(
            f"saga, {len(rounds) * n:,} transitions in {sum(rounds):.2f}s",
            len(rounds) * (n - 1) / sum(rounds),
            "msg/s",
            base,
            bare_rate,
        )
    ] + [
        Figure(f"  round {r.type} ({t:.2f}s)", (n - 1) / t, "msg/s", base, bare_rate)
        for r, t in zip(ROUNDS, rounds, strict=True)
    ]
    print_figures(
        f"saga processor: {n:,} orders, {SAGA_PARTITIONS} partitions, goal >= 0.5x", figures
    )


def main(
    orders: int = typer.Option(500, envvar="BENCH_SAGA_ORDERS", min=2, help="orders (N)"),
    kafka: str = typer.Option("127.0.0.1:9092", envvar="KAFKA_BOOTSTRAP_SERVERS"),
    postgres: str = typer.Option(POSTGRES_DEFAULT, envvar="POSTGRES_DSN"),
) -> None:
    asyncio.run(bench(orders, kafka, postgres))


if __name__ == "__main__":
    typer.run(main)
