"""`leadline` against the whole system: every service, the read side and the payment-provider
simulator run as real processes on real Kafka and PostgreSQL (their own databases and a fresh
copy of the catalogue's topics), and the console script is run as an operator runs it, with
the services' own environment.

One system serves the module (starting it is the slow part); each test keeps to its own
orders, and the test that stops a service starts it again.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.envelope import Envelope
from tests.cli.running import Following, Ran, leadline
from tests.conftest import Infra
from tests.support import eventually
from tests.support.outside import Outside
from tests.support.processes import catalogue_copy
from tests.support.system import databases, running_system

pytestmark = pytest.mark.e2e

PROCESSES = ["checkout", "inventory", "receipts", "projection", "orchestrator", "simulator"]
SAGA = [
    "OrderPlaced",
    "ReserveStock",
    "StockReserved",
    "RequestPayment",
    "PaymentAuthorized",
    "ConfirmOrder",
    "OrderConfirmed",
    "ReceiptIssued",
]


@dataclass
class Deployment:
    outside: Outside
    env: dict[str, str]  # what an operator of this deployment exports

    async def leadline(self, *args: str, input: str | None = None) -> Ran:
        return await leadline(*args, env=self.env, input=input)


@dataclass(frozen=True)
class Order:
    customer: str
    order_id: str


@pytest.fixture(scope="module")
async def deployment(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    tmp = tmp_path_factory.mktemp("cli")
    bootstrap = infra.kafka_bootstrap
    async with (
        catalogue_copy(bootstrap, "cli") as prefix,
        databases(infra.postgres_dsn) as dsns,
        running_system(dsns, prefix, bootstrap, tmp, with_projection=True) as system,
    ):
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LEADLINE_TOPIC_PREFIX": prefix,
            **{f"{name.upper()}_DATABASE_URL": dsn for name, dsn in dsns.items()},
            **{f"{name.upper()}_HTTP_PORT": str(p.port) for name, p in system.procs.items()},
        }
        yield Deployment(Outside(system, prefix, bootstrap, dsns), env)


def customer() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


async def completed(outside: Outside) -> Order:
    who = customer()
    order_id = await outside.placed(who, [{"sku": "TEA-002", "quantity": 1}])
    saga = await outside.saga_ends(order_id)
    assert saga["status"] == "completed", saga
    return Order(who, order_id)


@pytest.fixture(scope="module")
async def order(deployment: Deployment) -> Order:
    """One order placed through checkout and taken to its end by the saga."""
    return await completed(deployment.outside)


def path(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A trace node and, depth first, everything under it."""
    yield node
    for child in node["children"]:
        yield from path(child)


async def states(deployment: Deployment) -> tuple[int, dict[tuple[str, str], str]]:
    """`status --json`'s exit status and each part's state."""
    ran = await deployment.leadline("status", "--json")
    report = json.loads(ran.out)
    assert report["ok"] is (ran.code == 0), ran
    return ran.code, {(p["kind"], p["name"]): p["state"] for p in report["parts"]}


async def test_status_lists_every_broker_database_and_service_as_up(
    deployment: Deployment,
) -> None:
    # eventually: on a loaded machine a readiness probe may miss its 2 s once
    _, seen = await eventually(
        lambda: states(deployment), lambda found: found[0] == 0, timeout=60, what="all up"
    )

    brokers = {name for kind, name in seen if kind == "kafka"}
    assert brokers
    assert all(name.startswith("broker ") for name in brokers)
    assert seen == {
        **{("kafka", name): "up" for name in brokers},
        **{("postgres", name): "up" for name in PROCESSES},
        **{("service", name): "up" for name in PROCESSES},
    }
    table = await deployment.leadline("status")
    assert all(name in table.out for name in PROCESSES), table


async def test_saga_show_and_list_read_the_saga_of_an_order_placed_through_checkout(
    deployment: Deployment, order: Order
) -> None:
    shown = (await deployment.leadline("saga", "show", order.order_id, "--json")).json()

    assert (shown["order_id"], shown["status"]) == (order.order_id, "completed")
    assert [s["type"] for s in shown["steps"]] == [
        "OrderPlaced",
        "StockReserved",
        "PaymentAuthorized",
        "OrderConfirmed",
        "ReceiptIssued",
    ]
    assert [c["type"] for c in shown["steps"][0]["commands"]] == ["ReserveStock"]
    assert shown["receipt_number"]
    human = await deployment.leadline("saga", "show", order.order_id)
    assert human.code == 0
    assert order.order_id in human.out
    assert "ReceiptIssued" in human.out

    listed = (await deployment.leadline("saga", "list", "--state", "completed", "--json")).json()
    assert order.order_id in [s["order_id"] for s in listed["sagas"]]
    assert {s["status"] for s in listed["sagas"]} == {"completed"}
    assert listed["counts"]["completed"] >= 1
    paying = (await deployment.leadline("saga", "list", "--state", "paying", "--json")).json()
    assert order.order_id not in [s["order_id"] for s in paying["sagas"]]


async def test_trace_shows_every_message_of_the_order_by_causation_with_timings(
    deployment: Deployment, order: Order
) -> None:
    traced = (await deployment.leadline("trace", order.order_id, "--json")).json()

    [root] = traced["roots"]
    assert (root["type"], root["topic"], root["after_seconds"]) == (
        "OrderPlaced",
        "checkout.events",
        0,
    )
    # the saga's chain, each message a child of the one that caused it
    chain, node = [root], root
    for wanted in SAGA[1:]:
        node = next(c for c in node["children"] if c["type"] == wanted)
        assert node["causation_id"] == chain[-1]["event_id"]
        chain.append(node)
    assert [n["type"] for n in chain] == SAGA
    times = [n["after_seconds"] for n in chain]
    assert times == sorted(times)
    everything = list(path(root))
    assert {n["type"] for n in everything} == {*SAGA, "StockLevelChanged"}
    assert len({n["event_id"] for n in everything}) == len(everything)

    tree = await deployment.leadline("trace", order.order_id)
    assert tree.code == 0
    lines = tree.out.splitlines()
    at = [next(i for i, line in enumerate(lines) if f" {t} " in line) for t in SAGA]
    assert at == sorted(at), tree.out  # printed in causation order
    assert "+0.000s OrderPlaced" in tree.out


async def test_events_tail_filters_by_correlation_and_type(
    deployment: Deployment, order: Order
) -> None:
    other = await completed(deployment.outside)

    def tail(*args: str) -> Any:
        return deployment.leadline(
            "events", "tail", "checkout.events", "--from-beginning", "--no-follow", "--json", *args
        )

    mine = await tail("--correlation", order.order_id)
    assert mine.code == 0, mine.err
    records = [
        Envelope.model_validate(r["envelope"]) for r in map(json.loads, mine.out.splitlines())
    ]
    assert [(e.type, e.correlation_id) for e in records] == [
        ("OrderPlaced", order.order_id),
        ("OrderConfirmed", order.order_id),
    ]
    confirmed = await tail("--correlation", other.order_id, "--type", "OrderConfirmed")
    [only] = [json.loads(line) for line in confirmed.out.splitlines()]
    assert (only["envelope"]["type"], only["envelope"]["correlation_id"]) == (
        "OrderConfirmed",
        other.order_id,
    )
    placed = await tail("--type", "OrderPlaced")
    ids = [json.loads(line)["envelope"]["correlation_id"] for line in placed.out.splitlines()]
    assert {order.order_id, other.order_id} <= set(ids)
    human = await tail("--correlation", order.order_id, "--limit", "1")
    assert human.out.count("\n") == 1
    assert "OrderPlaced" in human.out


async def test_events_tail_follows_the_topic_until_its_limit(deployment: Deployment) -> None:
    outside = deployment.outside
    async with Following(
        "events",
        "tail",
        "checkout.events",
        "--type",
        "OrderPlaced",
        "--limit",
        "1",
        "--json",
        env=deployment.env,
    ) as tail:
        # said once it stands at the end: a record produced after this is read
        assert "following" in await tail.stderr_line()
        who = customer()
        order_id = await outside.placed(who, [{"sku": "TEA-003", "quantity": 1}])
        line = await tail.stdout_line()
        assert await tail.ended() == 0
    record = json.loads(line)
    assert (record["envelope"]["type"], record["envelope"]["correlation_id"]) == (
        "OrderPlaced",
        order_id,
    )
    await outside.saga_ends(order_id)


async def test_topics_shows_a_consumer_groups_lag_grow_then_drop_to_zero(
    deployment: Deployment,
) -> None:
    outside = deployment.outside

    async def lag() -> int | None:
        report = (await deployment.leadline("topics", "warehouse.events", "--json")).json()
        [topic] = report["topics"]
        return next((g["lag"] for g in topic["groups"] if g["group"] == "inventory"), None)

    await outside.receive_stock("TEA-001", 1)
    await eventually(lag, lambda n: n == 0, timeout=60, what="inventory caught up")
    with outside.paused("inventory"):
        for _ in range(3):
            await outside.receive_stock("TEA-001", 1)
        assert await lag() == 3
    assert await eventually(lag, lambda n: n == 0, timeout=90, what="lag back to 0") == 0

    table = await deployment.leadline("topics")
    assert table.code == 0
    assert "warehouse.events" in table.out
    assert "inventory.commands.dlq" in table.out


async def test_dlq_lists_shows_and_redrives_a_poison_record(deployment: Deployment) -> None:
    outside = deployment.outside
    ref = f"poison-{uuid.uuid4().hex[:8]}"
    poison = Envelope(
        event_id=uuid.uuid4(),
        type="ReserveStok",  # a typo no registry knows: inventory dead-letters it
        version=1,
        occurred_at=datetime.now(UTC),
        producer="cli-test",
        key=ref,
        correlation_id=ref,
        payload={"order_id": ref},
    )
    await outside.produce(
        "inventory.commands", poison.to_bytes(), key=ref.encode(), headers=poison.headers()
    )

    async def letters(*args: str) -> list[dict[str, Any]]:
        listed = await deployment.leadline("dlq", "list", "--json", *args)
        return [d for d in listed.json()["dead_letters"] if d["event_id"] == str(poison.event_id)]

    [letter] = await eventually(
        lambda: letters("--topic", "inventory.commands", "--reason", "unknown-type"),
        bool,
        timeout=60,
        what="the poison dead-lettered",
    )
    assert (letter["reason"], letter["consumer"]) == ("unknown-type", "inventory")
    assert letter["origin"]["topic"] == "inventory.commands"
    assert letter["id"].startswith("inventory.commands.dlq:0:")
    assert await letters("--since", "10m") == [letter]
    assert await letters("--until", "2000-01-01T00:00:00") == []
    assert await letters("--reason", "schema-violation") == []

    shown = (await deployment.leadline("dlq", "show", letter["id"], "--json")).json()
    assert shown["record"]["envelope"]["type"] == "ReserveStok"
    assert shown["origin"] == letter["origin"]
    human = await deployment.leadline("dlq", "show", letter["id"])
    assert "unknown-type" in human.out
    assert "ReserveStok" in human.out

    async def on_source() -> int:
        records = await outside.records("inventory.commands")
        return sum(r.header("event_id") == str(poison.event_id) for r in records)

    refused = await deployment.leadline("dlq", "redrive", letter["id"], input="n\n")
    assert refused.code == 1
    assert "will re-produce 1 dead letter" in refused.out
    assert letter["id"] in refused.out
    assert "re-drive 1?" in refused.out
    assert await on_source() == 1

    done = await deployment.leadline("dlq", "redrive", letter["id"], "--yes")
    assert done.code == 0, done.err
    assert "re-driven: 1" in done.out
    assert await on_source() == 2  # acknowledged before the CLI answered
    # still poison: its consumer dead-letters it again
    await eventually(
        lambda: letters("--topic", "inventory.commands"),
        lambda found: len(found) == 2,
        timeout=60,
        what="the re-driven poison dead-lettered again",
    )


async def test_rebuild_replays_a_view_with_a_progress_bar_and_the_view_still_answers(
    deployment: Deployment, order: Order
) -> None:
    ran = await deployment.leadline("rebuild", "orders")

    assert ran.code == 0, ran.err
    assert "rebuilding orders" in ran.out  # the projection's own progress bar
    replayed = re.search(r"orders: (\d+) records replayed \((\d+) applied", ran.out)
    assert replayed, ran.out
    assert int(replayed[2]) >= 4  # at least the order's placed, reserved, paid and confirmed
    assert "swapped in" in ran.out
    version = (await deployment.outside.order(order.customer, order.order_id))["version"]
    status, view = await deployment.outside.read_model(order.customer, order.order_id, version)
    assert (status, view["status"]) == (200, "confirmed")

    unknown = await deployment.leadline("rebuild", "nope")
    assert unknown.code == 2
    assert unknown.err.strip().splitlines() == [
        "leadline: no view 'nope'; views: orders, stock, sales, outcomes"
    ]


async def test_status_reports_a_stopped_service_as_down(deployment: Deployment) -> None:
    receipts = deployment.outside.system.procs["receipts"]
    receipts.stop()
    try:
        code, seen = await eventually(
            lambda: states(deployment),
            lambda found: (
                [k for k, state in found[1].items() if state != "up"] == [("service", "receipts")]
            ),
            timeout=60,
            what="receipts alone down",
        )
        assert code == 1
        assert seen[("service", "receipts")] == "down"
    finally:
        receipts.start()
        await receipts.ready(timeout=90)
    await eventually(lambda: states(deployment), lambda found: found[0] == 0, what="all up again")
