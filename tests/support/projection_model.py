"""What the projection's views must hold after a history of events, recomputed in plain Python
from what the view modules promise (their docstrings, not their SQL), and the same tables read
back from PostgreSQL in the same shape, for the property test to compare. The daily figures
are summed when asked (`queries.sales_per_day`, `queries.outcomes_per_day`): they are compared
as the queries answer them.

A history is every record the views were sent, `(catalogue topic, envelope)`, in the order each
topic delivered it; records of one key keep their order, records of different topics do not.
Each view's inbox makes a record sent twice count once, so the first delivery of an event id
(per topic and producer, the inbox's scope) is the one that counts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson

from schemas.checkout.v1 import OrderCancelled, OrderCommandRefused, OrderConfirmed, OrderRejected
from schemas.checkout.v2 import OrderPlaced
from schemas.inventory.v1 import (
    StockLevelChanged,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from schemas.payments.v1 import PaymentAuthorized, PaymentDeclined, PaymentVoided
from schemas.receipts.v1 import ReceiptIssued
from schemas.registry import Message
from services.projection import queries
from services.projection.consumers import VIEWS
from services.projection.store import table_rows
from services.projection.views import utc_day
from shared.envelope import Envelope

Row = dict[str, Any]
Rows = dict[str, list[Row]]
"""`view.table` (e.g. `sales.counted`) or a query's name → its rows, sorted by `KEYS`."""

History = Sequence[tuple[str, Envelope]]

ORDER_COLUMNS = (
    "order_id",
    "customer_id",
    "status",
    "version",
    "status_reason",
    "placed_at",
    "currency",
    "total_cents",
    "lines",
    "reservation",
    "reservation_reason",
    "payment",
    "payment_id",
    "payment_reason",
    "receipt_number",
    "receipt_total_cents",
    "receipt_issued_at",
)
KEYS = {
    "orders.orders": ("order_id",),
    "orders.timeline": ("order_id", "event_id"),
    "stock.stock": ("sku",),
    "sales.order_lines": ("order_id", "sku"),
    "sales.counted": ("order_id",),
    "outcomes.decided": ("order_id",),
    "sales_per_day": ("day", "sku", "currency"),
    "outcomes_per_day": ("day", "outcome", "reason"),
}
DECISIONS = {OrderConfirmed: "confirmed", OrderRejected: "rejected", OrderCancelled: "cancelled"}
Decision = OrderConfirmed | OrderRejected | OrderCancelled


@dataclass(frozen=True)
class Event:
    envelope: Envelope
    message: Message  # the payload as its newest version (v1 records upcast)


@dataclass(frozen=True)
class Scope:
    """What one example owns: its orders, its SKUs and its days (examples share none)."""

    orders: frozenset[str]
    skus: frozenset[str]
    days: tuple[date, date]  # the first and the last, included

    def holds(self, row: Row) -> bool:
        return row.get("order_id") in self.orders or row.get("sku") in self.skus


def expected(history: History) -> Rows:
    """Every view table, and the daily figures, as the projection must answer them once it
    has read all of `history`."""
    events = _first_deliveries(history)
    rows = {**_orders(events), **_stock(events), **_sales(events), **_outcomes(events)}
    return {name: _sorted(name, table) for name, table in rows.items()}


async def actual(pool: asyncpg.Pool, scope: Scope) -> Rows:
    """Every view table's rows within `scope`, and the daily figures of its days, shaped like
    `expected`: jsonb decoded, times in UTC, sorted in Python (a database collation orders
    text differently)."""
    found: Rows = {}
    async with pool.acquire() as conn:
        for view in VIEWS.values():
            for table, order_by in view.rows:
                rows = await table_rows(conn, view.schema, table, order_by)
                found[f"{view.name}.{table}"] = [_normal(r) for r in rows if scope.holds(r)]
    found["sales_per_day"] = await queries.sales_per_day(pool, *scope.days)
    found["outcomes_per_day"] = await queries.outcomes_per_day(pool, *scope.days)
    return {name: _sorted(name, rows) for name, rows in found.items()}


def _first_deliveries(history: History) -> list[Event]:
    seen: set[tuple[str, str, uuid.UUID]] = set()
    events = []
    for topic, envelope in history:
        claim = (topic, envelope.producer, envelope.event_id)
        if claim not in seen:
            seen.add(claim)
            events.append(Event(envelope, envelope.decode()))
    return events


def _orders(events: Iterable[Event]) -> Rows:
    """One row per order: each topic owns its own columns, whichever topic comes first makes
    the row; checkout's columns only move forward in stream version; every event of an order
    (a refusal too) is a step of its timeline."""
    orders: dict[str, Row] = {}
    timeline = []
    for event in events:
        message, envelope = event.message, event.envelope
        if isinstance(message, StockLevelChanged):
            continue
        order_id: str = message.order_id  # every other event here is about one order
        if isinstance(message, OrderCommandRefused):
            detail: str | None = f"{message.command}: {message.reason}"
        else:
            row = orders.setdefault(order_id, _blank_order(order_id))
            detail = _apply(row, envelope, message)
        step = {"order_id": order_id, "event_id": envelope.event_id, "step": envelope.type}
        timeline.append({**step, "at": _utc(envelope.occurred_at), "detail": detail})
    return {"orders.orders": list(orders.values()), "orders.timeline": timeline}


def _blank_order(order_id: str) -> Row:
    return {**dict.fromkeys(ORDER_COLUMNS), "order_id": order_id, "version": 0}


def _apply(row: Row, envelope: Envelope, message: Message) -> str | None:
    """Apply one event to its order's row; returns the timeline step's detail."""
    match message:
        case OrderPlaced():
            # an event published before stream versions counts as the next one
            version = envelope.stream_version or row["version"] + 1
            if row["version"] < version:
                row.update(
                    customer_id=message.customer_id,
                    status="placed",
                    version=version,
                    placed_at=_utc(envelope.occurred_at),
                    currency=message.currency,
                    total_cents=message.total_cents,
                    lines=[line.model_dump(mode="json") for line in message.lines],
                )
            return None
        case OrderConfirmed() | OrderRejected() | OrderCancelled():
            reason = None if isinstance(message, OrderConfirmed) else message.reason
            version = envelope.stream_version or row["version"] + 1
            if row["version"] < version:
                row.update(status=DECISIONS[type(message)], status_reason=reason, version=version)
            return reason
        case StockReserved():
            row.update(reservation="reserved", reservation_reason=None)
            return None
        case StockReservationFailed():
            row.update(reservation="failed", reservation_reason=message.reason)
            return message.reason
        case StockReleased():
            row.update(reservation="released", reservation_reason=None)
            return None
        case PaymentAuthorized():
            row.update(payment="authorized", payment_id=message.payment_id, payment_reason=None)
            return None
        case PaymentDeclined():
            row.update(payment="declined", payment_reason=message.reason)
            return message.reason
        case PaymentVoided():
            # a void with no payment id voided nothing: the payment stays as it was
            if message.payment_id is not None:
                row.update(payment="voided", payment_id=message.payment_id, payment_reason=None)
            return None
        case ReceiptIssued():
            # one receipt per order: the first one read stays
            if row["receipt_number"] is None:
                row.update(
                    receipt_number=message.receipt_number,
                    receipt_total_cents=message.total_cents,
                    receipt_issued_at=_utc(message.issued_at),
                )
            if row["customer_id"] is None:
                row["customer_id"] = message.customer_id
            return message.receipt_number
    raise AssertionError(f"the orders view does not read {envelope.type}")


def _stock(events: Iterable[Event]) -> Rows:
    """Per SKU, the last level inventory announced."""
    stock: dict[str, Row] = {}
    for event in events:
        if isinstance(level := event.message, StockLevelChanged):
            stock[level.sku] = {
                "sku": level.sku,
                "on_hand": level.on_hand,
                "reserved": level.reserved,
                "available": level.available,
                "as_of": _utc(event.envelope.occurred_at),
            }
    return {"stock.stock": list(stock.values())}


def _sales(events: Iterable[Event]) -> Rows:
    """The lines of each order (per SKU, as first placed) and the day each confirmed order is
    counted on (the UTC day of its first confirmation); per day, SKU and currency, the counted
    orders' quantities, amounts and number."""
    lines: dict[str, dict[str, Row]] = {}
    counted: dict[str, date] = {}
    for event in events:
        message = event.message
        if isinstance(message, OrderPlaced) and message.order_id not in lines:
            per_sku: dict[str, Row] = {}
            for line in message.lines:
                row = per_sku.setdefault(
                    line.sku,
                    {
                        "order_id": message.order_id,
                        "sku": line.sku,
                        "currency": message.currency,
                        "quantity": 0,
                        "amount_cents": 0,
                    },
                )
                row["quantity"] += line.quantity
                row["amount_cents"] += line.line_total_cents
            lines[message.order_id] = per_sku
        elif isinstance(message, OrderConfirmed) and message.order_id not in counted:
            counted[message.order_id] = utc_day(event.envelope.occurred_at)
    per_day: dict[tuple[date, str, str], Row] = {}
    for order_id, day in counted.items():
        for line in lines.get(order_id, {}).values():
            key = (day, line["sku"], line["currency"])
            sums = per_day.setdefault(
                key,
                {
                    "day": day,
                    "sku": line["sku"],
                    "currency": line["currency"],
                    "quantity": 0,
                    "revenue_cents": 0,
                    "orders": 0,
                },
            )
            sums["quantity"] += line["quantity"]
            sums["revenue_cents"] += line["amount_cents"]
            sums["orders"] += 1
    return {
        "sales.order_lines": [row for per_sku in lines.values() for row in per_sku.values()],
        "sales.counted": [{"order_id": o, "day": d} for o, d in counted.items()],
        "sales_per_day": list(per_day.values()),
    }


def _outcomes(events: Iterable[Event]) -> Rows:
    """Each order's first decision, on its UTC day; per day, orders per outcome (rejections
    per reason, the others with reason '')."""
    decided: dict[str, Row] = {}
    for event in events:
        message = event.message
        if isinstance(message, Decision) and message.order_id not in decided:
            decided[message.order_id] = {
                "order_id": message.order_id,
                "day": utc_day(event.envelope.occurred_at),
                "outcome": DECISIONS[type(message)],
                "reason": message.reason if isinstance(message, OrderRejected) else "",
            }
    per_day = Counter((row["day"], row["outcome"], row["reason"]) for row in decided.values())
    return {
        "outcomes.decided": list(decided.values()),
        "outcomes_per_day": [
            {"day": d, "outcome": o, "reason": r, "orders": n} for (d, o, r), n in per_day.items()
        ],
    }


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _normal(row: Row) -> Row:
    def value(column: str, v: Any) -> Any:
        if isinstance(v, datetime):
            return _utc(v)
        if column == "lines" and isinstance(v, str):
            return orjson.loads(v)
        return v

    return {column: value(column, v) for column, v in row.items()}


def _sorted(name: str, rows: list[Row]) -> list[Row]:
    key = KEYS.get(name, ())  # a table the model does not know: left as read, to be reported
    return sorted(rows, key=lambda row: tuple(row[c] for c in key))
