"""Property: whatever reaches the projection, and in whatever order its topics interleave, with
any record sent again later, every view (and the daily figures its queries sum) equals a
recomputation from the events (`tests/support/projection_model.py`), on real Kafka and
PostgreSQL.

Hypothesis plans a few orders, each with the records its producers would publish (checkout,
inventory, payments, receipts; OrderPlaced v1 or v2, with stream versions or from before them),
and the stock levels of a few SKUs, at times spread over several days in several time zones.
It then shuffles the records across topics (each key keeps its order), sends some again later,
and cuts the delivery into chunks. After each chunk the test waits until every view's consumer
group has committed all of it (offsets commit after PostgreSQL, so the rows are there) and
compares the views with the model of what was sent so far: a chunk boundary makes the
cross-topic order real instead of leaving it to the broker, and the rows a view holds while an
order is half-known (a reservation before its order) are checked too.

One projection serves every example. Each example plays with ids, SKUs and days of its own and
compares only its own rows, so a replayed example starts from a clean slate too.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from schemas.checkout import v1, v2
from schemas.checkout.v1 import OrderCancelled, OrderCommandRefused, OrderConfirmed, OrderRejected
from schemas.inventory.v1 import (
    Shortage,
    StockLevelChanged,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from schemas.payments.v1 import PaymentAuthorized, PaymentDeclined, PaymentVoided
from schemas.receipts.v1 import ReceiptIssued
from schemas.registry import Message
from services.projection import bootstrap
from services.projection.consumers import VIEWS
from services.projection.settings import ProjectionSettings
from shared.envelope import Envelope, deterministic_id
from tests.support import eventually, projection_model, unique
from tests.support.projection_model import History, Scope

pytestmark = pytest.mark.integration

T = TypeVar("T")
Draw = Callable[[st.SearchStrategy[T]], T]

PRODUCERS = {
    "checkout.events": "checkout",
    "inventory.events": "inventory",
    "payments.events": "payment-provider-simulator",
    "receipts.events": "receipts",
}
FIRST_DAY = datetime(2031, 1, 1, tzinfo=UTC)
DAYS = 8  # an example's own days: it starts within 3 and each stream adds at most 4 times 12 h
SKUS = 3  # an example's own SKUs, few enough that orders share them
ZONES = (UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)))

# what each producer can say about one order, in the order it says it (DESIGN §2's replies:
# a release before the reserve fails the reserve, a void before the payment declines it)
RESERVATIONS = (
    (),
    ("reserved",),
    ("reserved", "released"),
    ("failed",),
    ("failed", "released"),
    ("released", "failed"),
)
PAYMENTS = (
    (),
    ("authorized",),
    ("authorized", "voided"),
    ("declined",),
    ("declined", "voided"),
    ("voided",),
    ("voided", "declined"),
)


@dataclass(frozen=True)
class World:
    """The names one example owns: ids no other example or run uses, days of its own."""

    run: str
    first_day: datetime

    def order(self, n: int) -> str:
        return f"o-{self.run}-{n}"

    def customer(self, n: int) -> str:
        return f"c-{self.run}-{n}"

    def sku(self, n: int) -> str:
        return f"{self.run.upper()}-{n}"

    def scope(self, orders: int) -> Scope:
        return Scope(
            orders=frozenset(self.order(n) for n in range(orders)),
            skus=frozenset(self.sku(n) for n in range(SKUS)),
            days=(self.first_day.date(), self.first_day.date() + timedelta(days=DAYS - 1)),
        )


@dataclass
class Stream:
    """One key's records on one topic, in the order they happened (and are delivered)."""

    world: World
    topic: str
    key: str
    minutes: int  # when its last record happened, after the example's first midnight
    records: list[Envelope] = field(default_factory=list)

    def add(self, draw: Draw[Any], message: Message, stream_version: int | None = None) -> None:
        self.minutes += draw(st.integers(0, 12 * 60))
        at = self.world.first_day + timedelta(minutes=self.minutes)
        event_id = deterministic_id(self.world.run, self.topic, self.key, str(len(self.records)))
        self.records.append(
            Envelope(
                event_id=event_id,
                type=message.TYPE,
                version=message.VERSION,
                occurred_at=at.astimezone(draw(st.sampled_from(ZONES))),  # the producer's zone
                producer=PRODUCERS[self.topic],
                key=self.key,
                correlation_id=self.key,
                stream_version=stream_version,
                payload=message.model_dump(mode="json"),
            )
        )


@st.composite
def order_streams(draw: Draw[Any], world: World, n: int) -> list[Stream]:
    order_id, customer = world.order(n), world.customer(draw(st.integers(0, 2)))
    legacy = draw(st.booleans())  # placed before OrderPlaced v2: in euros, no line totals
    currency = "EUR" if legacy else draw(st.sampled_from(["EUR", "USD"]))
    line = st.tuples(st.integers(0, SKUS - 1), st.integers(1, 5), st.integers(0, 5000))
    lines = [(world.sku(s), q, p) for s, q, p in draw(st.lists(line, min_size=1, max_size=3))]
    total = sum(q * p for _, q, p in lines)
    outcome = draw(st.sampled_from([None, "confirmed", "rejected", "cancelled"]))
    start = draw(st.integers(0, 3 * 24 * 60))
    checkout, inventory, payments, receipts = (
        Stream(world, topic, order_id, start) for topic in PRODUCERS
    )

    placed: Message
    if legacy:
        old = [v1.OrderLine(sku=s, quantity=q, unit_price_cents=p) for s, q, p in lines]
        placed = v1.OrderPlaced(
            order_id=order_id, customer_id=customer, lines=old, total_cents=total
        )
        # republished as stored: with its stream version, or from before there were any
        versions = (draw(st.sampled_from([None, 1])), draw(st.sampled_from([None, 2])))
    else:
        new = [
            v2.OrderLine(sku=s, quantity=q, unit_price_cents=p, line_total_cents=q * p)
            for s, q, p in lines
        ]
        placed = v2.OrderPlaced(
            order_id=order_id, customer_id=customer, lines=new, currency=currency, total_cents=total
        )
        versions = (1, 2)
    checkout.add(draw, placed, versions[0])
    if outcome is not None:
        reason = draw(st.sampled_from(["out of stock", "payment declined", "no reply in time"]))
        decision = {
            "confirmed": OrderConfirmed(order_id=order_id),
            "rejected": OrderRejected(order_id=order_id, reason=reason),
            "cancelled": OrderCancelled(order_id=order_id, reason="the customer cancelled"),
        }[outcome]
        checkout.add(draw, decision, versions[1])
        if draw(st.booleans()):  # the saga's command lost the race: refused, not in the stream
            command = "RejectOrder" if outcome == "confirmed" else "ConfirmOrder"
            refused = OrderCommandRefused(
                order_id=order_id, command=command, status=outcome, reason=f"order is {outcome}"
            )
            checkout.add(draw, refused)

    held = [StockLine(sku=s, quantity=q) for s, q in _per_sku(lines).items()]
    steps = ("reserved",) if outcome == "confirmed" else draw(st.sampled_from(RESERVATIONS))
    for i, step in enumerate(steps):
        if step == "reserved":
            inventory.add(draw, StockReserved(order_id=order_id, lines=held))
        elif step == "released":
            lines_held = held if "reserved" in steps[:i] else []
            inventory.add(draw, StockReleased(order_id=order_id, lines=lines_held))
        elif "released" in steps[:i]:
            inventory.add(
                draw, StockReservationFailed(order_id=order_id, reason="released", shortages=[])
            )
        else:
            short = Shortage(sku=held[0].sku, requested=held[0].quantity, available=0)
            failed = StockReservationFailed(
                order_id=order_id, reason="insufficient stock", shortages=[short]
            )
            inventory.add(draw, failed)

    payment_id = f"pay-{order_id}"
    steps = ("authorized",) if outcome == "confirmed" else draw(st.sampled_from(PAYMENTS))
    for i, step in enumerate(steps):
        if step == "authorized":
            authorized = PaymentAuthorized(
                order_id=order_id, payment_id=payment_id, amount_cents=total
            )
            payments.add(draw, authorized)
        elif step == "declined":
            payments.add(draw, PaymentDeclined(order_id=order_id, reason="card declined"))
        else:
            voided = payment_id if "authorized" in steps[:i] else None  # None: nothing to void
            payments.add(draw, PaymentVoided(order_id=order_id, payment_id=voided))

    if outcome == "confirmed" and draw(st.booleans()):
        receipts.minutes = checkout.minutes  # issued after the confirmation
        tax = total // 5
        receipt = ReceiptIssued(
            order_id=order_id,
            customer_id=customer,
            receipt_number=f"LL-{n + 1:08d}",
            currency=currency,
            subtotal_cents=total,
            tax_cents=tax,
            total_cents=total + tax,
            issued_at=checkout.records[1].occurred_at,
        )
        receipts.add(draw, receipt)
    return [checkout, inventory, payments, receipts]


def _per_sku(lines: Sequence[tuple[str, int, int]]) -> dict[str, int]:
    quantities: dict[str, int] = {}
    for sku, quantity, _ in lines:
        quantities[sku] = quantities.get(sku, 0) + quantity
    return quantities


@st.composite
def level_stream(draw: Draw[Any], world: World, n: int) -> Stream:
    """Inventory's announcements of one SKU's level, keyed by the SKU."""
    stream = Stream(world, "inventory.events", world.sku(n), draw(st.integers(0, 3 * 24 * 60)))
    for _ in range(draw(st.integers(0, 3))):
        on_hand = draw(st.integers(0, 50))
        reserved = draw(st.integers(0, on_hand))
        level = StockLevelChanged(
            sku=stream.key, on_hand=on_hand, reserved=reserved, available=on_hand - reserved
        )
        stream.add(draw, level)
    return stream


@dataclass(frozen=True)
class Delivery:
    records: list[tuple[str, Envelope]]  # (catalogue topic, envelope), in the order sent
    checkpoints: list[int]  # after this many records, the views are compared with the model
    scope: Scope

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints a failing example with this

    def __repr__(self) -> str:
        lines = [f"Delivery (compared after {self.checkpoints} records):"]
        for n, (topic, e) in enumerate(self.records):
            lines.append(
                f"  {n:3} {topic:17} {e.key:26} {e.type} v{e.version} sv={e.stream_version}"
                f" at={e.occurred_at.isoformat()} id={str(e.event_id)[:8]}"
            )
        return "\n".join(lines)


@st.composite
def deliveries(draw: Draw[Any], world: World) -> Delivery:
    orders = draw(st.integers(1, 8))
    streams = [s for n in range(orders) for s in draw(order_streams(world, n))]
    streams += [draw(level_stream(world, n)) for n in range(SKUS)]
    streams = [s for s in streams if s.records]
    # a shuffle of the streams' labels, the k-th label of a stream taking its k-th record:
    # topics and keys interleave any way, each key's records keep their order
    labels = draw(st.permutations([i for i, s in enumerate(streams) for _ in s.records]))
    taken = [0] * len(streams)
    first: list[tuple[str, Envelope]] = []
    for i in labels:
        first.append((streams[i].topic, streams[i].records[taken[i]]))
        taken[i] += 1
    # a record sent again (the very same envelope) after `later` more of the others
    again = st.tuples(st.integers(0, len(first) - 1), st.integers(0, len(first)))
    slots = [(n, 1, record) for n, record in enumerate(first)]
    for n, later in draw(st.lists(again, max_size=len(first) // 3 + 1)):
        slots.append((min(n + 1 + later, len(first)), 0, first[n]))
    records = [record for *_, record in sorted(slots, key=lambda slot: slot[:2])]
    cuts = draw(st.lists(st.integers(1, len(records)), max_size=2, unique=True))
    return Delivery(records, sorted({*cuts, len(records)}), world.scope(orders))


@dataclass
class Projection:
    """The projection running in this process, the producer feeding it, and the end offset of
    every partition written to, to tell when each view has committed everything sent."""

    running: bootstrap.Running
    settings: ProjectionSettings
    producer: AIOKafkaProducer
    admin: AIOKafkaAdminClient
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    examples: itertools.count[int] = field(default_factory=itertools.count)

    def world(self) -> World:
        days = DAYS * next(self.examples)
        return World(unique("p").removeprefix("p-"), FIRST_DAY + timedelta(days=days))

    async def send(self, records: History) -> None:
        sent = [
            await self.producer.send(
                self.settings.topic(topic), e.to_bytes(), key=e.key.encode(), headers=e.headers()
            )
            for topic, e in records
        ]
        for future in sent:
            written = await future
            tp = TopicPartition(written.topic, written.partition)
            self.ends[tp] = max(self.ends.get(tp, 0), written.offset + 1)

    async def behind(self) -> dict[str, int]:
        """Per view, the records sent that its consumer group has not committed."""
        behind = {}
        for name, view in VIEWS.items():
            group = view.consumer_name(self.settings.consumer_group)
            offsets = await self.admin.list_consumer_group_offsets(group)
            committed = {tp: meta.offset for tp, meta in offsets.items()}
            topics = {self.settings.topic(t) for t in view.topics}
            behind[name] = sum(
                end - max(committed.get(tp, 0), 0)
                for tp, end in self.ends.items()
                if tp.topic in topics
            )
        return behind

    async def caught_up(self) -> None:
        await eventually(
            self.behind,
            lambda behind: not any(behind.values()),
            timeout=30,
            interval=0.05,
            what="every view committed every record sent",
        )


@pytest.fixture
async def projection(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str
) -> AsyncIterator[Projection]:
    config = ProjectionSettings(
        database_url=pg_dsn,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=catalogue_prefix,
        consumer_group=unique("projection"),
    )
    async with contextlib.AsyncExitStack() as stack:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        stack.push_async_callback(producer.stop)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        stack.push_async_callback(admin.close)
        running = await bootstrap.start(config)
        stack.push_async_callback(running.stop)
        yield Projection(running, config, producer, admin)


@settings(
    max_examples=int(os.environ.get("LEADLINE_PROJECTION_EXAMPLES", "25")),
    deadline=None,
    # each example is a round trip through Kafka and PostgreSQL: shrinking would take many
    # minutes, and a failing delivery prints one line per record anyway
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_views_equal_a_recomputation_of_whatever_was_delivered(
    projection: Projection, data: st.DataObject
) -> None:
    delivery = data.draw(deliveries(projection.world()))
    sent = 0
    for checkpoint in delivery.checkpoints:
        await projection.send(delivery.records[sent:checkpoint])
        sent = checkpoint
        await projection.caught_up()
        views = await projection_model.actual(projection.running.pool, delivery.scope)
        model = projection_model.expected(delivery.records[:sent])
        assert sorted(views) == sorted(model), "the views' tables are not the model's"
        for table, rows in model.items():
            # left: what the projection holds; right: the recomputation
            assert views[table] == rows, f"{table} after {sent} of {len(delivery.records)} records"
