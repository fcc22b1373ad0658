"""Property: whatever the interleaving, duplication and timing of replies, the saga ends in a
terminal state that agrees with the world it talked to, with every compensation done.

The world is a model of the other services, keeping the promises the saga relies on (one
outcome per command, also when repeated; a release wins over a later reserve; a void answers
also when nothing was authorized; a ConfirmOrder that meets a cancelled order is refused). Each
topic delivers in order, topics interleave freely, any message may be delivered twice, the
customer may cancel at any moment and any deadline may pass at any moment.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.checkout.v1 import (
    ConfirmOrder,
    OrderCancelled,
    OrderCommandRefused,
    OrderConfirmed,
    OrderRejected,
    RejectOrder,
)
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.inventory.v1 import (
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from schemas.orchestrator.v1 import SagaDeadlinePassed
from schemas.payments.v1 import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentVoided,
    RequestPayment,
    VoidPayment,
)
from schemas.receipts.v1 import ReceiptIssued
from schemas.registry import Message
from services.orchestrator.saga import Command, Incoming, Saga, Status, Timeouts, apply

ORDER = "ord-1"
T0 = datetime(2026, 12, 1, tzinfo=UTC)
LINES = [StockLine(sku="TEA-001", quantity=1)]


@dataclass
class World:
    stock_ok: bool
    pays: str  # "approve" | "decline" | "silent"
    order: str = "placed"  # checkout's view: placed, confirmed, rejected, cancelled
    reservation: str = "none"  # none, reserved, failed, released
    payment: str = "none"  # none, authorized, declined, voided
    receipts: int = 0
    # first outcome of each command step, re-sent as is when the command is repeated
    answered: dict[str, tuple[str, Message]] = field(default_factory=dict)
    topics: dict[str, collections.deque[tuple[str, Message]]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    commands: dict[str, collections.deque[Command]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    ids: int = 0

    def emit(self, topic: str, message: Message) -> tuple[str, Message]:
        self.ids += 1
        sent = (f"{topic}-{self.ids}", message)
        self.topics[topic].append(sent)
        return sent

    def once(self, step: str, topic: str, make: object) -> None:
        """Answer a command: the first time with a new outcome, then the same one again."""
        if step in self.answered:
            self.topics[topic].append(self.answered[step])
            return
        message = make() if callable(make) else None
        if message is not None:
            self.answered[step] = self.emit(topic, message)

    def handle(self, command: Command) -> None:
        m = command.message()
        if isinstance(m, ReserveStock):
            self.once("reserve", "inventory", self._reserve)
        elif isinstance(m, ReleaseStock):
            self.once("release", "inventory", self._release)
        elif isinstance(m, RequestPayment):
            self.once("pay", "payments", self._pay)
        elif isinstance(m, VoidPayment):
            self.once("void", "payments", self._void)
        elif isinstance(m, ConfirmOrder):
            self.once("confirm", "checkout", self._confirm)
        elif isinstance(m, RejectOrder):
            self.once("reject", "checkout", self._reject)

    def _reserve(self) -> Message:
        if self.reservation == "released":
            return StockReservationFailed(order_id=ORDER, reason="released", shortages=[])
        self.reservation = "reserved" if self.stock_ok else "failed"
        if self.stock_ok:
            return StockReserved(order_id=ORDER, lines=LINES)
        return StockReservationFailed(order_id=ORDER, reason="out of stock", shortages=[])

    def _release(self) -> Message:
        held = self.reservation == "reserved"
        self.reservation = "released"  # a later reserve must not reserve
        return StockReleased(order_id=ORDER, lines=LINES if held else [])

    def _pay(self) -> Message | None:
        if self.pays == "silent":
            return None
        if self.payment == "voided" or self.pays == "decline":
            self.payment = "declined" if self.payment == "none" else self.payment
            return PaymentDeclined(order_id=ORDER, reason="declined")
        self.payment = "authorized"
        return PaymentAuthorized(order_id=ORDER, payment_id="pay-1", amount_cents=100)

    def _void(self) -> Message:
        had = "pay-1" if self.payment == "authorized" else None
        self.payment = "voided"
        return PaymentVoided(order_id=ORDER, payment_id=had)

    def _confirm(self) -> Message:
        if self.order == "placed":
            self.order = "confirmed"
            self.receipts += 1
            self.emit("receipts", _receipt())
            return OrderConfirmed(order_id=ORDER)
        return OrderCommandRefused(
            order_id=ORDER, command="ConfirmOrder", status=self.order, reason="refused"
        )

    def _reject(self) -> Message:
        if self.order == "placed":
            self.order = "rejected"
            return OrderRejected(order_id=ORDER, reason="rejected")
        return OrderCommandRefused(
            order_id=ORDER, command="RejectOrder", status=self.order, reason="refused"
        )

    def cancel(self) -> None:
        """The customer cancels: checkout accepts it only while the order is placed."""
        if self.order == "placed":
            self.order = "cancelled"
            self.emit("checkout", OrderCancelled(order_id=ORDER, reason="customer"))


def _receipt() -> ReceiptIssued:
    return ReceiptIssued(
        order_id=ORDER,
        customer_id="alice",
        receipt_number="LL-00000001",
        currency="EUR",
        subtotal_cents=100,
        tax_cents=20,
        total_cents=120,
        issued_at=T0,
    )


class Run:
    def __init__(self, world: World) -> None:
        self.world = world
        self.saga: Saga | None = None
        self.at = T0
        self.sent: list[str] = []
        self.deadlines = 0

    def deliver(self, message_id: str, message: Message) -> None:
        self.at += timedelta(seconds=1)
        self.saga, commands = apply(self.saga, Incoming(message_id, message, self.at), Timeouts())
        for c in commands:
            self.sent.append(c.type)
            self.world.commands[c.topic].append(c)

    def deadline_passes(self) -> None:
        if self.saga is None or self.saga.deadline_at is None:
            return
        self.deadlines += 1
        passed = SagaDeadlinePassed(
            order_id=ORDER, status=self.saga.status.value, deadline=self.saga.deadline
        )
        self.world.topics["deadlines"].append((f"deadline-{self.deadlines}", passed))


def _placed() -> OrderPlaced:
    line = OrderLine(sku="TEA-001", quantity=1, unit_price_cents=100, line_total_cents=100)
    return OrderPlaced(
        order_id=ORDER, customer_id="alice", lines=[line], currency="EUR", total_cents=100
    )


ACTIONS = ("deliver", "duplicate", "handle", "cancel", "deadline")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stock_ok=st.booleans(),
    pays=st.sampled_from(["approve", "decline", "silent"]),
    data=st.data(),
)
def test_any_interleaving_ends_terminal_and_consistent(
    stock_ok: bool, pays: str, data: st.DataObject
) -> None:
    world = World(stock_ok=stock_ok, pays=pays)
    run = Run(world)
    run.deliver("placed", _placed())
    for _ in range(60):  # the chaotic part: anything may happen next
        action = data.draw(st.sampled_from(ACTIONS))
        ready = [t for t, q in world.topics.items() if q]
        queued = [t for t, q in world.commands.items() if q]
        if action in ("deliver", "duplicate") and ready:
            topic = data.draw(st.sampled_from(sorted(ready)))
            message = world.topics[topic][0]
            if action == "deliver":
                world.topics[topic].popleft()
            run.deliver(*message)
        elif action == "handle" and queued:
            world.handle(world.commands[data.draw(st.sampled_from(sorted(queued)))].popleft())
        elif action == "cancel":
            world.cancel()
        elif action == "deadline":
            run.deadline_passes()
    # then the system settles: everything in flight is delivered and handled, and the only
    # thing that still happens by itself is a deadline passing when nothing else moves
    for _ in range(500):
        if ready := [t for t, q in world.topics.items() if q]:
            run.deliver(*world.topics[sorted(ready)[0]].popleft())
        elif queued := [t for t, q in world.commands.items() if q]:
            world.handle(world.commands[sorted(queued)[0]].popleft())
        elif run.saga is not None and not run.saga.terminal and run.saga.deadline_at is not None:
            run.deadline_passes()
        else:
            break

    saga = run.saga
    assert saga is not None
    assert saga.terminal, (saga.status, world)
    if saga.status is Status.COMPLETED:
        assert world.order == "confirmed"
        assert (world.reservation, world.payment, world.receipts) == ("reserved", "authorized", 1)
        assert not {"ReleaseStock", "VoidPayment", "RejectOrder"} & set(run.sent)
    else:
        # nothing held, nothing charged, and the order says what the saga says
        assert world.reservation != "reserved", (saga.status, world)
        assert world.payment != "authorized", (saga.status, world)
        assert world.order == saga.status.value, (saga.status, world)
        assert world.receipts == 0
