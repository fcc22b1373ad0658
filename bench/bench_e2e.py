"""The whole system under an open-loop order load: the highest sustained rate, end-to-end latency
next to a raw Kafka chain of as many hops, and what each process costs in CPU and memory.

The system runs as the end-to-end tests run it (tests.support: every service, the read side and
the payment-provider simulator as real processes, each on a fresh database, on a prefixed copy of
the catalogue), with consumer groups of its own and the service's 30 s payment deadline.

Load, open loop: at rate R for D seconds, order i is due at t0 + i/R and is sent then, whatever
the earlier ones are doing (one task each; at most IN_FLIGHT_CAP in flight, only against a
runaway). Every latency runs from that intended time, so a stalled system is charged for the
orders it kept waiting (no coordinated omission). An order is `POST /orders` (one line, one unit
of one of a few SKUs, an Idempotency-Key, a bearer token as the tests mint it); it is complete
when its `ReceiptIssued` is seen on `receipts.events` by a consumer started before the load,
which also counts OrderConfirmed/OrderRejected on `checkout.events`. Inventory is topped up
through `warehouse.events` before each step, so that no order is refused for want of stock.

Throughput search: steps at increasing rates (BENCH_E2E_RATES, default 25,50,100,150 orders/s;
BENCH_E2E_SECONDS each, default 20) on the same running system, each waiting up to
BENCH_E2E_GRACE s (default 60) after its last send for its receipts. A rate is sustained when
at least 99% of its orders complete within that grace and completions keep up: receipts per
second from the 10th to the 90th percentile receipt are at least 0.95 R (a system falling behind
spreads its receipts over longer than its sends; the deciles keep the spread of the latency at
either end out of it). The search stops at the first rate not sustained.

Baseline, same run, system idle: the saga's chain of messages replayed on raw aiokafka, one
produce -> consume hop per message the order's flow puts on Kafka, 9 in all: OrderPlaced,
ReserveStock, StockReserved, RequestPayment, PaymentAuthorized (upstream), the re-keyed
payment, ConfirmOrder, OrderConfirmed, ReceiptIssued. Each hop is a topic of six partitions
under the run's prefix and a consumer task (auto commit off, offsets committed after its sends
are acknowledged) that re-produces every record to the next one with an acks=all idempotent
producer; 600-byte records keyed by order, as many as the reference step sent, open loop at its
rate (the 50/s step, or the one nearest to it). What the system adds beyond that floor is the
Postgres transactions, outbox relays, inboxes, the faust table and the HTTP front.

CPU and RSS: every process (and this one, the load generator on the same machine) read from
/proc each second during the steps: CPU % is utime + stime over the steps' wall time (100% = one
core), RSS the peak VmRSS. Linux only; no psutil needed.

Every topic under the prefix and every database are deleted at the end. Results go to
.run/bench-e2e.json, the processes' logs to .run/bench-e2e/. Run: `make bench-e2e`, or
`python -m bench.bench_e2e` with Kafka and PostgreSQL up (KAFKA_BOOTSTRAP_SERVERS, POSTGRES_DSN).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from bench.chain import (
    HOPS,
    MESSAGE_BYTES,
    WARMUP_ORDERS,
    Percentiles,
    baseline,
    idempotent_producer,
    percentiles,
    until,
)
from bench.lag import Lags, LagSampler, short
from bench.report import Figure, print_figures
from bench.usage import cpu_seconds, infrastructure, rss_mib
from schemas.warehouse.v1 import StockReceived
from shared.envelope import Envelope
from tests.support.processes import catalogue_copy
from tests.support.system import System, bearer, databases, running_system

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
POSTGRES = os.environ.get("POSTGRES_DSN", "postgresql://leadline:leadline@127.0.0.1:5433/postgres")
RATES = [float(r) for r in os.environ.get("BENCH_E2E_RATES", "25,50,100,150").split(",")]
SECONDS = float(os.environ.get("BENCH_E2E_SECONDS", "20"))
GRACE = float(os.environ.get("BENCH_E2E_GRACE", "60"))
REFERENCE_RATE = 50.0
IN_FLIGHT_CAP = 2000
# the SKUs seeded with the most stock (services/inventory/seed.py); one unit per order
SKUS = ("TEA-001", "TEA-002", "TEA-003", "CUP-001", "FILTER-100")
CUSTOMERS = 16
OUT = Path(__file__).resolve().parents[1] / ".run" / "bench-e2e.json"
# the processes' logs, mailbox and orchestrator state, kept until the next run
STATE = OUT.with_suffix("")
# the env prefixes of the processes that name their consumer group from the environment
GROUPED = ("checkout", "inventory", "receipts", "projection", "simulator")

# ------------------------------------------------------------------------------- what happened


@dataclass
class Outcomes:
    """Each order's receipt (when it was seen) and its confirmation or rejection."""

    receipts: dict[str, float] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)

    def see(self, value: bytes, at: float) -> None:
        envelope = orjson.loads(value)
        order_id = envelope["payload"].get("order_id")
        match envelope["type"]:
            case "ReceiptIssued":
                self.receipts.setdefault(order_id, at)
            case "OrderConfirmed":
                self.confirmed.add(order_id)
            case "OrderRejected":
                self.rejected.add(order_id)


async def watch(consumer: AIOKafkaConsumer, outcomes: Outcomes) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        seen_at = time.perf_counter()
        for records in batches.values():
            for record in records:
                outcomes.see(record.value, seen_at)


@contextlib.asynccontextmanager
async def watching(prefix: str) -> AsyncIterator[Outcomes]:
    consumer = AIOKafkaConsumer(
        f"{prefix}receipts.events",
        f"{prefix}checkout.events",
        bootstrap_servers=BOOTSTRAP,
        group_id=f"{prefix}bench-watch",
        auto_offset_reset="earliest",
    )
    outcomes = Outcomes()
    await consumer.start()
    task = asyncio.create_task(watch(consumer, outcomes))
    try:
        yield outcomes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


# ----------------------------------------------------------------------------- the order load


@dataclass(frozen=True)
class Placement:
    intended: float
    answered: float
    status: int | str  # the HTTP status, or the error that left it unanswered
    order_id: str | None


class Customers:
    """Places orders as a few customers, round-robin over the SKUs."""

    def __init__(self, system: System) -> None:
        self.url = system.url("checkout", "/orders")
        self.tokens = [bearer(f"bench-{k}") for k in range(CUSTOMERS)]
        limits = httpx.Limits(max_connections=IN_FLIGHT_CAP, max_keepalive_connections=200)
        self.http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(GRACE))
        self.slots = asyncio.Semaphore(IN_FLIGHT_CAP)
        self.placed = 0

    async def place(self, intended: float) -> Placement:
        self.placed += 1
        n = self.placed
        body = {"lines": [{"sku": SKUS[n % len(SKUS)], "quantity": 1}]}
        headers = self.tokens[n % CUSTOMERS] | {"Idempotency-Key": f"e2e-{uuid.uuid4().hex}"}
        async with self.slots:
            try:
                response = await self.http.post(self.url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                return Placement(intended, time.perf_counter(), type(exc).__name__, None)
        answered = time.perf_counter()
        order_id = response.json()["order_id"] if response.status_code == 201 else None
        return Placement(intended, answered, response.status_code, order_id)

    async def at_rate(self, rate: float, count: int) -> tuple[float, list[Placement]]:
        """Order i sent at t0 + i/rate whether or not earlier ones were answered; returns the
        end of the sending window and every placement once all are answered."""
        t0 = time.perf_counter() + 0.05
        sent: list[asyncio.Task[Placement]] = []
        for i in range(count):
            intended = t0 + i / rate
            if (delay := intended - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            sent.append(asyncio.create_task(self.place(intended)))
        return t0 + count / rate, list(await asyncio.gather(*sent))

    async def aclose(self) -> None:
        await self.http.aclose()


class Warehouse:
    """Tops inventory up through `warehouse.events`, as the upstream warehouse does."""

    def __init__(self, system: System, prefix: str, producer: AIOKafkaProducer) -> None:
        self.system = system
        self.topic = f"{prefix}warehouse.events"
        self.producer = producer

    async def available(self, sku: str) -> int:
        response = await self.system.http.get(self.system.url("inventory", f"/stock/{sku}"))
        available: int = response.json()["available"]
        return available

    async def stock_for(self, orders: int) -> None:
        """Enough available of every SKU for `orders` one-unit orders spread over them."""
        need = math.ceil(orders / len(SKUS)) + 10
        for sku in SKUS:
            missing = need - await self.available(sku)
            while missing > 0:
                quantity = min(missing, 1000)  # the most one StockReceived may carry
                arrival = StockReceived(sku=sku, quantity=quantity, shipment_id=uuid.uuid4().hex)
                envelope = Envelope.wrap(arrival, key=sku, producer="warehouse")
                await self.producer.send_and_wait(
                    self.topic, envelope.to_bytes(), key=sku.encode(), headers=envelope.headers()
                )
                missing -= quantity
        deadline = time.perf_counter() + 60
        for sku in SKUS:
            while (available := await self.available(sku)) < need:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{sku}: {available} available, {need} needed after 60 s")
                await asyncio.sleep(0.2)


# --------------------------------------------------------------------------------- the steps


@dataclass(frozen=True)
class Step:
    rate: float
    seconds: float
    sent: int
    accepted: int
    refused: dict[str, int]  # HTTP status, or the error that left it unanswered -> count
    completed: int
    confirmed: int
    rejected: int
    completed_per_s: float
    post_ms: Percentiles
    e2e_ms: Percentiles
    # consumer lag per group (records): its peak during the step, and when sending ended
    lag_peak: dict[str, int] = field(default_factory=dict)
    lag_at_send_end: dict[str, int] = field(default_factory=dict)

    @property
    def sustained(self) -> bool:
        keeps_up = self.completed_per_s >= 0.95 * self.rate
        return self.completed >= 0.99 * self.sent and keeps_up


def pace(times: list[float]) -> float:
    """Receipts per second from the 10th to the 90th percentile receipt: how fast the system
    got through the step, which the spread of its latency at either end does not skew."""
    first, last = int(0.1 * len(times)), int(0.9 * len(times)) - 1
    span = times[last] - times[first] if last > first else 0.0
    return (last - first) / span if span > 0 else 0.0


def step_of(rate: float, placements: list[Placement], outcomes: Outcomes, deadline: float) -> Step:
    accepted = {p.order_id: p for p in placements if p.order_id is not None}
    refused = Counter(str(p.status) for p in placements if p.order_id is None)
    # (receipt seen, intended send) of the orders completed by the deadline
    done = [
        (seen, p.intended)
        for order_id, p in accepted.items()
        if (seen := outcomes.receipts.get(order_id, math.inf)) <= deadline
    ]
    return Step(
        rate=rate,
        seconds=SECONDS,
        sent=len(placements),
        accepted=len(accepted),
        refused=dict(refused),
        completed=len(done),
        confirmed=len(accepted.keys() & outcomes.confirmed),
        rejected=len(accepted.keys() & outcomes.rejected),
        completed_per_s=pace(sorted(seen for seen, _ in done)),
        post_ms=percentiles([(p.answered - p.intended) * 1000 for p in accepted.values()]),
        e2e_ms=percentiles([(seen - intended) * 1000 for seen, intended in done]),
    )


async def run_step(
    customers: Customers, outcomes: Outcomes, rate: float, count: int, lags: Lags, prefix: str
) -> Step:
    window_end, placements = await customers.at_rate(rate, count)
    lags.mark()
    deadline = window_end + GRACE
    ids = [p.order_id for p in placements if p.order_id is not None]
    await until(lambda: all(i in outcomes.receipts for i in ids), deadline)
    step = step_of(rate, placements, outcomes, deadline)
    step.lag_peak.update({short(g, prefix): n for g, n in sorted(lags.peak.items())})
    step.lag_at_send_end.update({short(g, prefix): n for g, n in sorted(lags.at_mark.items())})
    return step


async def warm_up(system: System, customers: Customers, outcomes: Outcomes) -> None:
    """A few orders through every process (and the watcher's assignment) before any timing."""
    _, placements = await customers.at_rate(5, WARMUP_ORDERS)
    ids = [p.order_id for p in placements if p.order_id is not None]
    deadline = time.perf_counter() + 120
    if len(ids) < WARMUP_ORDERS or not await until(
        lambda: all(i in outcomes.receipts for i in ids), deadline
    ):
        tails = "\n".join(f"--- {n}\n{p.tail(15)}" for n, p in system.procs.items())
        raise RuntimeError(f"warm-up orders did not all complete: {placements}\n{tails}")


# ------------------------------------------------------------------------------ CPU and memory


@dataclass
class Usage:
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else math.nan


@contextlib.asynccontextmanager
async def sampled(pids: Mapping[str, int], usage: dict[str, Usage]) -> AsyncIterator[None]:
    """Adds the block's CPU time and wall time to `usage`, and its peak RSS (read each second)."""
    stop = asyncio.Event()

    apart = frozenset(pids.values())  # each process measured once, not also in its parent's

    async def peaks() -> None:
        while not stop.is_set():
            for name, pid in pids.items():
                rss = rss_mib(pid, apart - {pid})
                usage[name].peak_rss_mib = max(usage[name].peak_rss_mib, rss)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    started = time.perf_counter()
    before = {n: cpu_seconds(p, apart - {p}) for n, p in pids.items()}
    task = asyncio.create_task(peaks())
    try:
        yield
    finally:
        stop.set()
        await task
        wall = time.perf_counter() - started
        for name, pid in pids.items():
            usage[name].cpu_seconds += cpu_seconds(pid, apart - {pid}) - before[name]
            usage[name].wall_seconds += wall


def ensure_all_running(system: System) -> None:
    for name, proc in system.procs.items():
        if proc.proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.proc.returncode}):\n{proc.tail()}")


def pids_of(system: System) -> dict[str, int]:
    pids = {n: p.proc.pid for n, p in system.procs.items() if p.proc is not None}
    return pids | {"bench (load generator)": os.getpid()} | infrastructure()


# ----------------------------------------------------------------------------------- the run


@contextlib.asynccontextmanager
async def dropped_on_failure(dsns: Mapping[str, str]) -> AsyncIterator[None]:
    # tests.support.system.databases drops its databases on a clean exit only
    try:
        yield
    except BaseException:
        admin = await asyncpg.connect(POSTGRES)
        try:
            for dsn in dsns.values():
                name = dsn.rpartition("/")[2]
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        raise


def reference_rate() -> float:
    return min(RATES, key=lambda r: (abs(r - REFERENCE_RATE), r))


async def search(system: System, prefix: str, outcomes: Outcomes) -> dict[str, Any]:
    usage = {name: Usage() for name in pids_of(system)}
    steps: list[Step] = []
    customers = Customers(system)
    producer = idempotent_producer(BOOTSTRAP)
    await producer.start()
    try:
        async with LagSampler(BOOTSTRAP, prefix) as sampler:
            warehouse = Warehouse(system, prefix, producer)
            await warm_up(system, customers, outcomes)
            rate = reference_rate()
            chain = await baseline(BOOTSTRAP, prefix, rate, int(rate * SECONDS), GRACE)
            for rate in sorted(RATES):
                count = int(rate * SECONDS)
                await warehouse.stock_for(count)
                async with sampled(pids_of(system), usage), sampler.sampling() as lags:
                    steps.append(await run_step(customers, outcomes, rate, count, lags, prefix))
                done = steps[-1]
                print(
                    f"step {rate:g}/s: {done.completed}/{done.sent} receipts,"
                    f" {done.completed_per_s:.1f}/s, e2e p99 {done.e2e_ms['p99']:.0f} ms",
                    flush=True,
                )
                ensure_all_running(system)
                if not steps[-1].sustained:
                    break
    finally:
        await customers.aclose()
        await producer.stop()
    return results(steps, chain, usage)


def results(steps: list[Step], chain: Percentiles, usage: dict[str, Usage]) -> dict[str, Any]:
    sustained = [s.rate for s in steps if s.sustained]
    reference = next((s for s in steps if s.rate == reference_rate()), None)
    return {
        "when": datetime.now(UTC).isoformat(),
        "config": {
            "rates": RATES,
            "seconds": SECONDS,
            "grace_s": GRACE,
            "skus": list(SKUS),
            "in_flight_cap": IN_FLIGHT_CAP,
        },
        "steps": [asdict(s) | {"sustained": s.sustained} for s in steps],
        "highest_sustained_rate": max(sustained, default=None),
        "reference": None if reference is None else asdict(reference),
        "baseline": {
            "hops": HOPS,
            "rate": reference_rate(),
            "messages": int(reference_rate() * SECONDS),
            "message_bytes": MESSAGE_BYTES,
            "latency_ms": chain,
        },
        "processes": {
            n: {"cpu_percent": u.cpu_percent, "peak_rss_mib": u.peak_rss_mib}
            for n, u in usage.items()
        },
    }


async def bench() -> dict[str, Any]:
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    async with (
        catalogue_copy(BOOTSTRAP, "benche2e") as prefix,
        databases(POSTGRES) as dsns,
        dropped_on_failure(dsns),
        watching(prefix) as outcomes,
        running_system(
            dsns,
            prefix,
            BOOTSTRAP,
            STATE,
            with_projection=True,
            instances=1,
            # the service's payment deadline, not the tests' short one
            ORCHESTRATOR_PAY_TIMEOUT="30",
            # groups of its own (the orchestrator's app id is prefixed already)
            **{f"{s.upper()}_CONSUMER_GROUP": f"{prefix}{s}" for s in GROUPED},
        ) as system,
    ):
        names = sorted(dsn.rpartition("/")[2] for dsn in dsns.values())
        print(f"system up on topics {prefix}*, databases {names}", flush=True)
        return await search(system, prefix, outcomes)


# ------------------------------------------------------------------------------------ printing


def print_steps(found: dict[str, Any]) -> None:
    table = Table(title=f"Open-loop steps, {SECONDS:g} s each (latency from intended send time)")
    for col in ("rate/s", "sent", "201", "receipts", "confirmed", "done/s", "sustained"):
        table.add_column(col, justify="right")
    for col in ("POST p50/p99 ms", "e2e p50/p95/p99 ms"):
        table.add_column(col, justify="right")
    for s in found["steps"]:
        post, e2e = s["post_ms"], s["e2e_ms"]
        table.add_row(
            f"{s['rate']:g}",
            str(s["sent"]),
            str(s["accepted"]),
            str(s["completed"]),
            str(s["confirmed"]),
            f"{s['completed_per_s']:.1f}",
            "yes" if s["sustained"] else "no",
            f"{post['p50']:.0f} / {post['p99']:.0f}",
            f"{e2e['p50']:.0f} / {e2e['p95']:.0f} / {e2e['p99']:.0f}",
        )
    Console(width=160).print(table)


def print_usage(found: dict[str, Any]) -> None:
    table = Table(title="Per process during the steps (100% = one core)")
    for col in ("process", "mean CPU %", "peak RSS MiB"):
        table.add_column(col, justify="left" if col == "process" else "right")
    for name, u in found["processes"].items():
        table.add_row(name, f"{u['cpu_percent']:.1f}", f"{u['peak_rss_mib']:.0f}")
    Console(width=160).print(table)


def print_lag(found: dict[str, Any]) -> None:
    table = Table(title="Consumer lag per group (records): when sending ended / peak of the step")
    table.add_column("group")
    steps = found["steps"]
    for s in steps:
        table.add_column(f"{s['rate']:g}/s", justify="right")
    groups = sorted({g for s in steps for g in s["lag_peak"]})
    for g in groups:
        cells = [f"{s['lag_at_send_end'].get(g, 0)} / {s['lag_peak'].get(g, 0)}" for s in steps]
        table.add_row(g, *cells)
    Console(width=160).print(table)


def print_latency(found: dict[str, Any]) -> None:
    reference, chain = found["reference"], found["baseline"]
    if reference is None:
        print(f"no {found['baseline']['rate']:g}/s step ran: no latency next to the baseline")
        return
    what = f"raw aiokafka, {HOPS} hops"
    figures = [
        Figure(
            what=f"e2e {p}",
            value=reference["e2e_ms"][p],
            unit="ms",
            baseline_what=f"{what} {p}",
            baseline_value=chain["latency_ms"][p],
            higher_is_better=False,
        )
        for p in ("p50", "p95", "p99")
    ]
    print_figures(f"End to end at {reference['rate']:g} orders/s, POST to ReceiptIssued", figures)


def main() -> None:
    found = asyncio.run(bench())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # orjson writes NaN (a step with no receipt) as null, which json.dumps would not
    OUT.write_bytes(orjson.dumps(found, option=orjson.OPT_INDENT_2) + b"\n")
    print_steps(found)
    print_latency(found)
    print_lag(found)
    print_usage(found)
    print(f"highest sustained rate: {found['highest_sustained_rate']} orders/s; written to {OUT}")


if __name__ == "__main__":
    main()
