"""Receipts handlers against in-memory fakes of the service's own store port."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schemas.checkout.v1 import OrderConfirmed
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.receipts.v1 import RequestReceipt
from schemas.registry import Message
from services.receipts import handlers
from services.receipts.domain import Order, Receipt
from shared.envelope import Envelope
from shared.errors import PermanentError
from shared.memory import MemoryDatabase, MemoryOutbox

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ISSUING = handlers.Issuing(
    issuer="LL", tax_rate=Decimal("0.20"), out="receipts.events", now=lambda: AT
)


@dataclass
class FakeReceipts:
    orders: dict[str, Order] = field(default_factory=dict)
    receipts: dict[str, Receipt] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    deliveries: list[str] = field(default_factory=list)

    async def add_order(self, order: Order) -> None:
        self.orders.setdefault(order.order_id, order)

    async def order(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    async def receipt(self, order_id: str) -> Receipt | None:
        return self.receipts.get(order_id)

    async def next_sequence(self, issuer: str) -> int:
        self.counters[issuer] = self.counters.get(issuer, 0) + 1
        return self.counters[issuer]

    async def add_receipt(self, receipt: Receipt, issuer: str, sequence: int) -> None:
        assert receipt.order_id not in self.receipts, "primary key"
        self.receipts[receipt.order_id] = receipt
        self.deliveries.append(receipt.number)


@dataclass
class FakeUoW:
    receipts: FakeReceipts = field(default_factory=FakeReceipts)
    outbox: MemoryOutbox = field(default_factory=lambda: MemoryOutbox(MemoryDatabase()))

    def sent(self) -> list[Envelope]:
        return [e for _, e in self.outbox.staged]


def _envelope(message: Message, key: str) -> Envelope:
    return Envelope.wrap(message, key=key, producer="checkout", event_id=uuid.uuid4())


async def _place(uow: FakeUoW, order_id: str, customer: str = "alice") -> None:
    placed = OrderPlaced(
        order_id=order_id,
        customer_id=customer,
        currency="EUR",
        total_cents=1350,
        lines=[
            OrderLine(sku="TEA-001", quantity=2, unit_price_cents=450, line_total_cents=900),
            OrderLine(sku="MUG-001", quantity=1, unit_price_cents=450, line_total_cents=450),
        ],
    )
    await handlers.keep_order(_envelope(placed, order_id), placed, uow)


async def _confirm(uow: FakeUoW, order_id: str) -> None:
    confirmed = OrderConfirmed(order_id=order_id)
    await handlers.issue_receipt(_envelope(confirmed, order_id), confirmed, uow, issuing=ISSUING)


async def test_confirmation_issues_a_numbered_receipt_and_queues_its_delivery() -> None:
    uow = FakeUoW()
    await _place(uow, "o1")
    await _confirm(uow, "o1")
    receipt = uow.receipts.receipts["o1"]
    assert receipt.number == "LL-00000001"
    assert (receipt.subtotal_cents, receipt.tax_cents, receipt.total_cents) == (1350, 270, 1620)
    assert uow.receipts.deliveries == ["LL-00000001"]
    (issued,) = uow.sent()
    assert issued.type == "ReceiptIssued"
    assert issued.key == "o1"
    assert issued.payload["receipt_number"] == "LL-00000001"
    assert issued.payload["total_cents"] == 1620
    assert issued.payload["issued_at"].startswith("2026-05-01T12:00:00")


async def test_a_second_confirmation_issues_nothing_new() -> None:
    uow = FakeUoW()
    await _place(uow, "o1")
    await _confirm(uow, "o1")
    await _confirm(uow, "o1")
    await _place(uow, "o2")
    await _confirm(uow, "o2")
    assert [r.number for r in uow.receipts.receipts.values()] == ["LL-00000001", "LL-00000002"]
    assert uow.receipts.deliveries == ["LL-00000001", "LL-00000002"]
    first, repeat, _ = uow.sent()
    assert repeat.event_id == first.event_id
    assert repeat.payload == first.payload


async def test_a_confirmation_without_its_order_is_refused_for_good() -> None:
    uow = FakeUoW()
    with pytest.raises(PermanentError):
        await _confirm(uow, "never-placed")
    assert uow.receipts.counters == {}


async def _ask_again(uow: FakeUoW, order_id: str) -> None:
    command = RequestReceipt(order_id=order_id)
    envelope = Envelope.wrap(command, key=order_id, producer="orchestrator", event_id=uuid.uuid4())
    await handlers.resend_receipt(envelope, command, uow, issuing=ISSUING)


async def test_a_receipt_asked_for_again_is_published_again_as_first_published() -> None:
    uow = FakeUoW()
    await _place(uow, "o1")
    await _confirm(uow, "o1")
    await _ask_again(uow, "o1")
    first, again = uow.sent()
    assert (again.type, again.key, again.event_id) == ("ReceiptIssued", "o1", first.event_id)
    assert again.payload == first.payload
    assert uow.receipts.deliveries == ["LL-00000001"]  # nothing issued, nothing mailed twice


async def test_a_receipt_asked_for_before_it_was_issued_sends_nothing() -> None:
    uow = FakeUoW()
    await _place(uow, "o1")
    await _ask_again(uow, "o1")
    assert uow.sent() == []
    assert uow.receipts.counters == {}
