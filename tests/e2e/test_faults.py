"""The whole system keeps its promises (DESIGN §4, "Nothing lost") under faults, on its own
Kafka and its own PostgreSQL so that both can be crashed.

While customers place orders at a fixed arrival rate (open loop, each POST retried with its
Idempotency-Key until acknowledged), every process is SIGKILLed at random moments and brought
back by a supervisor, one is SIGSTOPped for longer than its consumer session timeout, the
broker is hard-restarted (SIGKILL) twice and PostgreSQL crashed (immediate stop) once; poison
records go to every consumed topic. After the system settles, the invariants are checked on the
services' own databases and topics, and printed as a table (`-s` shows it).

Two topologies:

- `single`: one KRaft node (RF 1), one instance of each service.
- `cluster`: three KRaft nodes (RF 3, min ISR 2), two instances of each consumer service in one
  group each; the SIGKILLed instance stays down for a while so its partner takes its partitions
  over; the broker faults kill one node of three at a time.

Scale (environment): `LEADLINE_FAULT_ORDERS` (300 in `make test`; `make test-faults` runs
2,000), `LEADLINE_FAULT_RATE` (orders/s, 8), `LEADLINE_FAULT_KILLS` (SIGKILLs per process, 2;
4 in `make test-faults`),
`LEADLINE_FAULT_TOPOLOGIES` (`single,cluster`), `LEADLINE_FAULT_SEED` (printed by every run, to
repeat one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from confluent_kafka import Producer as ForeignProducer

from schemas.warehouse.v1 import StockReceived
from services.inventory.seed import SEED_STOCK
from shared.envelope import Envelope
from shared.kafka.admin import catalogue_specs, ensure_topics
from tests.support import eventually, unique
from tests.support.faults import (
    Chaos,
    Check,
    Infrastructure,
    Load,
    Poison,
    Schedule,
    Supervisor,
    checkout_outcomes,
    intents,
    invariants,
    poison_for_every_consumed_topic,
    projection_behind,
    read_dead_letters,
    saga_stream_repairs,
    sagas_open,
    settled,
    table,
    why_not_terminal,
)
from tests.support.infra import OwnKafka, OwnPostgres
from tests.support.processes import produce
from tests.support.system import DATABASES, System, running_system

pytestmark = pytest.mark.e2e

ORDERS = int(os.environ.get("LEADLINE_FAULT_ORDERS", "300"))
RATE = float(os.environ.get("LEADLINE_FAULT_RATE", "8"))
KILLS = int(os.environ.get("LEADLINE_FAULT_KILLS", "2"))
TOPOLOGIES = os.environ.get("LEADLINE_FAULT_TOPOLOGIES", "single,cluster").split(",")
SEED = int(os.environ.get("LEADLINE_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
SKUS = sorted(SEED_STOCK)
# never restocked, and only `short` orders ask for it (more than its seeded 25): they must fail
SHORT = "KETTLE-01"
STOCKED = [sku for sku in SKUS if sku != SHORT]
SESSION_TIMEOUT = 10.0  # the consumers' default session timeout (shared/kafka/consumer.py)
# every order is settled well within this after the load; scaled with the load's size
SETTLE = 240.0 + ORDERS / 5
REPORT = (
    Path(os.environ.get("LEADLINE_FAULT_REPORT", ""))
    if "LEADLINE_FAULT_REPORT" in os.environ
    else None
)


@contextlib.asynccontextmanager
async def own_infrastructure(tmp: Path, nodes: int) -> AsyncIterator[tuple[OwnKafka, OwnPostgres]]:
    kafka = OwnKafka(tmp / "kafka", nodes=nodes)
    postgres = OwnPostgres(tmp / "postgres", DATABASES)
    try:
        await asyncio.to_thread(kafka.up)
        await asyncio.to_thread(postgres.up)
        yield kafka, postgres
    finally:
        await asyncio.to_thread(kafka.remove)
        await asyncio.to_thread(postgres.remove)


def poison_with_a_foreign_producer(bootstrap: str, prefix: str, poison: list[Poison]) -> None:
    """librdkafka with its own defaults (CRC32 partitioner, no headers), as an outsider writes."""
    producer = ForeignProducer({"bootstrap.servers": bootstrap})
    for p in poison:
        producer.produce(prefix + p.topic, value=p.value, key=p.key)
    assert producer.flush(30) == 0


@pytest.mark.timeout(int(900 + ORDERS))
@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_every_acknowledged_order_ends_once_and_consistently_under_faults(
    topology: str, tmp_path: Path
) -> None:
    cluster = topology == "cluster"
    rng = random.Random(SEED)
    prefix = unique("faults") + "."
    print(f"\nfault run: topology={topology} seed={SEED} orders={ORDERS} rate={RATE}/s")
    async with own_infrastructure(tmp_path, 3 if cluster else 1) as (kafka, postgres):
        await ensure_topics(
            kafka.bootstrap,
            catalogue_specs(prefix),
            replication_factor=3 if cluster else 1,
            min_insync_replicas=2 if cluster else 1,
        )
        dsns = {name: postgres.dsn(name) for name in DATABASES}
        async with running_system(
            dsns,
            prefix,
            kafka.bootstrap,
            tmp_path,
            with_projection=True,
            instances=2 if cluster else 1,
            # a fault can outlast the test's short default; deadlines must not reject healthy
            # orders only because the broker was restarting
            ORCHESTRATOR_PAY_TIMEOUT="30",
            # a receipt lost on its way is asked for again at this deadline: well inside the
            # 120 s the run waits for every saga to end after the last order did
            ORCHESTRATOR_RECEIPT_TIMEOUT="45",
            ORCHESTRATOR_LIVENESS_WINDOW="30",
            **kafka.env,
        ) as system:
            await run_and_check(system, kafka, postgres, dsns, prefix, rng, topology)


async def run_and_check(
    system: System,
    kafka: OwnKafka,
    postgres: OwnPostgres,
    dsns: dict[str, str],
    prefix: str,
    rng: random.Random,
    topology: str,
) -> None:
    cluster = topology == "cluster"
    # enough that only `short` orders fall short, in shipments of at most 1,000 (the schema's cap)
    per_shipment = 1000
    received = {sku: per_shipment * -(-2 * ORDERS // per_shipment) for sku in STOCKED}
    shipments = [
        Envelope.wrap(
            StockReceived(sku=sku, quantity=per_shipment, shipment_id=unique("faults")),
            key=sku,
            producer="warehouse",
        )
        for sku, total in received.items()
        for _ in range(total // per_shipment)
    ]
    await produce(kafka.bootstrap, prefix + "warehouse.events", shipments)
    initial = {sku: SEED_STOCK[sku] + received.get(sku, 0) for sku in SKUS}
    await eventually(
        lambda: system.stock(STOCKED[-1]),
        lambda s: s.get("on_hand") == initial[STOCKED[-1]],
        timeout=60,
        what="shipments received",
    )
    poison = poison_for_every_consumed_topic()
    await asyncio.to_thread(poison_with_a_foreign_producer, kafka.bootstrap, prefix, poison)

    load = Load(system, intents(ORDERS, STOCKED, SHORT, rng), RATE, SEED)
    victims = [n for n in system.procs if not cluster or n.endswith("-2") or n == "simulator"]
    schedule = Schedule.plan(
        rng,
        load.duration,
        kill=victims,
        kills_each=KILLS,
        kill_hold=8.0 if cluster else 0.0,
        pause="inventory",
        pause_for=SESSION_TIMEOUT + 5,
        broker_nodes=[0, 1] if cluster else [0, 0],
        postgres_crashes=1,
    )
    infra = Infrastructure(kafka.kill, kafka.start, postgres.crash, postgres.up)
    supervisor = Supervisor(system)
    chaos = Chaos(system, supervisor, infra, schedule)
    supervising = asyncio.create_task(supervisor.run())
    started = time.monotonic()
    try:
        await asyncio.gather(load.run(), chaos.run())
        loaded = time.monotonic() - started
        # an order not terminal is a row of the table (asserted there, with where it got to)
        with contextlib.suppress(AssertionError):
            await eventually(
                lambda: settled(dsns, load.acknowledged),
                lambda n: n == 0,
                timeout=SETTLE,
                interval=1.0,
                what="every acknowledged order terminal",
            )
        # a saga still open is a row of the table (asserted there), so the run goes on to it
        with contextlib.suppress(AssertionError):
            await eventually(
                lambda: sagas_open(dsns), lambda o: not o, timeout=120, interval=1.0, what="sagas"
            )
        # a view still behind is a row of the table (asserted there, with the orders named)
        with contextlib.suppress(AssertionError):
            await eventually(
                lambda: projection_behind(dsns),
                lambda n: n == 0,
                timeout=120,
                interval=1.0,
                what="projection caught up",
            )
        settle = time.monotonic() - started - loaded
    finally:
        await supervisor.stop(supervising)
        await load.close()
    dead = await read_dead_letters(kafka.bootstrap, prefix)
    rows = await invariants(dsns, load, initial, dead, poison)
    orchestrators = system.instances("orchestrator")
    rows += saga_stream_repairs(system.procs[n].log for n in orchestrators)
    ended = await checkout_outcomes(dsns["checkout"])
    stuck = sorted(o for o in load.acknowledged if o not in ended)
    if stuck:
        logs = [system.procs[n].log for n in orchestrators]
        why = await why_not_terminal(dsns, stuck[:5], kafka.bootstrap, prefix, logs)
        rows.append(Check("where the orders not terminal got to", "-", why, False))
    outcomes = {
        kind: sum(1 for i in load.acknowledged.values() if i.kind == kind)
        for kind in ("approve", "decline", "short", "cancel")
    }
    report = table(
        f"Fault run — {topology}",
        rows,
        {
            "seed": SEED,
            "orders acknowledged": f"{len(load.acknowledged)} of {ORDERS} planned ({outcomes})",
            "arrival rate": f"{RATE}/s, load {loaded:.0f} s, settled {settle:.0f} s after",
            "client retries (no answer / 5xx)": load.retries,
            "cancel answers": dict(load.cancels),
            "faults": "; ".join(chaos.done),
            "restarts by the supervisor": dict(supervisor.restarts),
            "exits and liveness failures nobody caused": supervisor.unexpected or "none",
        },
    )
    print(report)
    print("supervisor:", "; ".join(supervisor.log))
    if REPORT is not None:
        with REPORT.open("a") as out:
            out.write(report + "\n\n")
    assert not load.refused, f"orders refused by checkout: {load.refused[:5]}"
    assert [r for r in rows if not r.ok] == [], report
