"""The order view: one row per order with its status, lines, totals, reservation, payment and
receipt, plus a timeline of every step; the customer order history is an index over it.

Facts about one order come from four topics whose relative order Kafka does not keep (a
`StockReserved` may be read before its `OrderPlaced`). Each topic writes its own columns of
the row (an upsert creates the row for whichever comes first), and within one topic the
records of one order keep their order. Checkout's columns are guarded by the order's stream
version, the same number checkout answers with as the ETag: a row only moves forward, and
"has version N been applied" is one comparison (read-your-writes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from schemas.checkout.v1 import OrderCancelled, OrderCommandRefused, OrderConfirmed, OrderRejected
from schemas.checkout.v2 import OrderPlaced
from schemas.inventory.v1 import StockReleased, StockReservationFailed, StockReserved
from schemas.payments.v1 import PaymentAuthorized, PaymentDeclined, PaymentVoided
from schemas.receipts.v1 import ReceiptIssued
from services.projection.store import ViewUnitOfWork
from services.projection.views import View
from shared.envelope import Envelope
from shared.kafka.consumer import Subscription

TABLES = """
CREATE TABLE IF NOT EXISTS {s}.orders (
    order_id            text        PRIMARY KEY,
    customer_id         text,
    status              text
                        CHECK (status IN ('placed', 'confirmed', 'rejected', 'cancelled')),
    version             integer     NOT NULL DEFAULT 0,
    status_reason       text,
    placed_at           timestamptz,
    currency            text,
    total_cents         bigint,
    lines               jsonb,
    reservation         text        CHECK (reservation IN ('reserved', 'failed', 'released')),
    reservation_reason  text,
    payment             text        CHECK (payment IN ('authorized', 'declined', 'voided')),
    payment_id          text,
    payment_reason      text,
    receipt_number      text,
    receipt_total_cents bigint,
    receipt_issued_at   timestamptz
);
CREATE INDEX IF NOT EXISTS orders_by_customer
    ON {s}.orders (customer_id, placed_at DESC, order_id DESC) WHERE placed_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.timeline (
    order_id  text        NOT NULL,
    event_id  uuid        NOT NULL,
    at        timestamptz NOT NULL,
    step      text        NOT NULL,
    detail    text,
    PRIMARY KEY (order_id, event_id)
);
"""

# Checkout's columns move only forward: a version at or below the row's is a replay. An event
# published before versions were (stream_version null) counts as the next one.
_STATUS = """
INSERT INTO {s}.orders (order_id, status, status_reason, version)
VALUES ($1, $2, $3, COALESCE($4::int, 1))
ON CONFLICT (order_id) DO UPDATE SET
    status = EXCLUDED.status,
    status_reason = EXCLUDED.status_reason,
    version = COALESCE($4::int, {s}.orders.version + 1)
WHERE $4::int IS NULL OR {s}.orders.version < $4::int
"""
_PLACED = """
INSERT INTO {s}.orders
    (order_id, customer_id, status, version, placed_at, currency, total_cents, lines)
VALUES ($1, $2, 'placed', COALESCE($3::int, 1), $4, $5, $6, $7::jsonb)
ON CONFLICT (order_id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id,
    placed_at = EXCLUDED.placed_at,
    currency = EXCLUDED.currency,
    total_cents = EXCLUDED.total_cents,
    lines = EXCLUDED.lines,
    status = CASE WHEN {s}.orders.version < EXCLUDED.version THEN 'placed'
                  ELSE {s}.orders.status END,
    version = GREATEST({s}.orders.version, EXCLUDED.version)
"""
_RESERVATION = """
INSERT INTO {s}.orders (order_id, reservation, reservation_reason) VALUES ($1, $2, $3)
ON CONFLICT (order_id) DO UPDATE SET
    reservation = EXCLUDED.reservation, reservation_reason = EXCLUDED.reservation_reason
"""
# A void with no payment id voided nothing (the order had no authorization): state unchanged.
_PAYMENT = """
INSERT INTO {s}.orders (order_id, payment, payment_id, payment_reason) VALUES ($1, $2, $3, $4)
ON CONFLICT (order_id) DO UPDATE SET
    payment = COALESCE(EXCLUDED.payment, {s}.orders.payment),
    payment_id = COALESCE(EXCLUDED.payment_id, {s}.orders.payment_id),
    payment_reason = CASE WHEN EXCLUDED.payment IS NULL THEN {s}.orders.payment_reason
                          ELSE EXCLUDED.payment_reason END
"""
# One receipt per order: the first one read stays.
_RECEIPT = """
INSERT INTO {s}.orders
    (order_id, customer_id, receipt_number, receipt_total_cents, receipt_issued_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (order_id) DO UPDATE SET
    customer_id = COALESCE({s}.orders.customer_id, EXCLUDED.customer_id),
    receipt_number = COALESCE({s}.orders.receipt_number, EXCLUDED.receipt_number),
    receipt_total_cents = COALESCE({s}.orders.receipt_total_cents, EXCLUDED.receipt_total_cents),
    receipt_issued_at = COALESCE({s}.orders.receipt_issued_at, EXCLUDED.receipt_issued_at)
"""
_TIMELINE = """
INSERT INTO {s}.timeline (order_id, event_id, at, step, detail) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
"""


def _and_step(statement: str, params: int) -> str:
    """`statement` (order id as $1, `params` parameters) and the event's timeline row in one
    round trip: the row's other parameters ($2 to $5 of `_TIMELINE`) follow the statement's."""
    step = re.sub(
        r"\$(\d+)\b",
        lambda m: "$1" if m[1] == "1" else f"${params + int(m[1]) - 1}",
        _TIMELINE.strip(),
    )
    return f"WITH step AS ({step})\n{statement.strip()}"


_STATUS, _PLACED = _and_step(_STATUS, 4), _and_step(_PLACED, 7)
_RESERVATION, _PAYMENT = _and_step(_RESERVATION, 3), _and_step(_PAYMENT, 4)
_RECEIPT = _and_step(_RECEIPT, 5)


def _write(
    uow: ViewUnitOfWork,
    statement: str,
    envelope: Envelope,
    order_id: str,
    detail: str | None,
    *args: object,
) -> None:
    """One of the statements above: `order_id` and `args` are its own parameters, the
    envelope and `detail` its timeline row's."""
    uow.write(
        statement,
        order_id,
        *args,
        envelope.event_id,
        envelope.occurred_at,
        envelope.type,
        detail,
    )


async def placed(envelope: Envelope, event: OrderPlaced, uow: ViewUnitOfWork) -> None:
    lines = orjson.dumps([line.model_dump(mode="json") for line in event.lines]).decode()
    _write(
        uow,
        _PLACED,
        envelope,
        event.order_id,
        None,
        event.customer_id,
        envelope.stream_version,
        envelope.occurred_at,
        event.currency,
        event.total_cents,
        lines,
    )


async def decided(
    envelope: Envelope, event: OrderConfirmed | OrderRejected | OrderCancelled, uow: ViewUnitOfWork
) -> None:
    status = {OrderConfirmed: "confirmed", OrderRejected: "rejected", OrderCancelled: "cancelled"}
    reason = getattr(event, "reason", None)
    if envelope.stream_version is None:
        # "the next version" depends on what ran before it: the statements written so far (its
        # order's placement among them) run first, or the regrouping could put it ahead of them
        await uow.flush()
    _write(
        uow,
        _STATUS,
        envelope,
        event.order_id,
        reason,
        status[type(event)],
        reason,
        envelope.stream_version,
    )


async def refused(envelope: Envelope, event: OrderCommandRefused, uow: ViewUnitOfWork) -> None:
    # not a change of the order (not in its stream): a step of its timeline only
    detail = f"{event.command}: {event.reason}"
    at, step = envelope.occurred_at, envelope.type
    uow.write(_TIMELINE, event.order_id, envelope.event_id, at, step, detail)


async def reservation(
    envelope: Envelope,
    event: StockReserved | StockReservationFailed | StockReleased,
    uow: ViewUnitOfWork,
) -> None:
    state = {StockReserved: "reserved", StockReservationFailed: "failed"}.get(
        type(event), "released"
    )
    reason = event.reason if isinstance(event, StockReservationFailed) else None
    _write(uow, _RESERVATION, envelope, event.order_id, reason, state, reason)


async def payment(
    envelope: Envelope,
    event: PaymentAuthorized | PaymentDeclined | PaymentVoided,
    uow: ViewUnitOfWork,
) -> None:
    state: str | None
    if isinstance(event, PaymentAuthorized):
        state, payment_id, reason = "authorized", event.payment_id, None
    elif isinstance(event, PaymentDeclined):
        state, payment_id, reason = "declined", None, event.reason
    else:
        state = "voided" if event.payment_id is not None else None
        payment_id, reason = event.payment_id, None
    _write(uow, _PAYMENT, envelope, event.order_id, reason, state, payment_id, reason)


async def receipt(envelope: Envelope, event: ReceiptIssued, uow: ViewUnitOfWork) -> None:
    _write(
        uow,
        _RECEIPT,
        envelope,
        event.order_id,
        event.receipt_number,
        event.customer_id,
        event.receipt_number,
        event.total_cents,
        event.issued_at,
    )


def subscriptions(topic: Callable[[str], str]) -> list[Subscription[ViewUnitOfWork]]:
    checkout, inventory = topic("checkout.events"), topic("inventory.events")
    payments, receipts = topic("payments.events"), topic("receipts.events")
    table: list[tuple[str, Any, Any]] = [
        (checkout, OrderPlaced, placed),
        (checkout, OrderConfirmed, decided),
        (checkout, OrderRejected, decided),
        (checkout, OrderCancelled, decided),
        (checkout, OrderCommandRefused, refused),
        (inventory, StockReserved, reservation),
        (inventory, StockReservationFailed, reservation),
        (inventory, StockReleased, reservation),
        (payments, PaymentAuthorized, payment),
        (payments, PaymentDeclined, payment),
        (payments, PaymentVoided, payment),
        (receipts, ReceiptIssued, receipt),
    ]
    return [Subscription(t, m, h) for t, m, h in table]


VIEW = View(
    name="orders",
    topics=("checkout.events", "inventory.events", "payments.events", "receipts.events"),
    tables=TABLES,
    rows=(("orders", "order_id"), ("timeline", "order_id, event_id")),
    subscriptions=subscriptions,
)
