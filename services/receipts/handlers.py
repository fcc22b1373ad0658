"""Receipts use cases, run inside the consumer runner's unit of work (inbox already claimed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from schemas.checkout.v1 import OrderConfirmed
from schemas.checkout.v2 import OrderPlaced
from schemas.receipts.v1 import ReceiptIssued, RequestReceipt
from services.receipts import domain
from services.receipts.ports import ReceiptsUnitOfWork
from shared.envelope import Envelope, deterministic_id
from shared.errors import PermanentError
from shared.observability.logging import get_logger

PRODUCER = "receipts"
log = get_logger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Issuing:
    """How receipts are issued: whose number series, what tax, which clock."""

    issuer: str
    tax_rate: Decimal
    out: str  # the receipts events topic
    now: Callable[[], datetime] = _utc_now


async def keep_order(envelope: Envelope, event: OrderPlaced, uow: ReceiptsUnitOfWork) -> None:
    lines = tuple(
        domain.Line(x.sku, x.quantity, x.unit_price_cents, x.line_total_cents) for x in event.lines
    )
    await uow.receipts.add_order(
        domain.Order(event.order_id, event.customer_id, event.currency, lines)
    )


async def issue_receipt(
    envelope: Envelope, event: OrderConfirmed, uow: ReceiptsUnitOfWork, *, issuing: Issuing
) -> None:
    # Locking the order's copy serialises two handlers of one order (a zombie after a
    # rebalance): the second waits, then finds the receipt the first committed.
    order = await uow.receipts.order(event.order_id)
    if order is None:
        # checkout.events is keyed by order, so OrderPlaced came first unless it was itself
        # dead-lettered: park this one beside it, to be re-driven after it.
        raise PermanentError(f"no OrderPlaced seen for order {event.order_id}")
    receipt = await uow.receipts.receipt(event.order_id)
    if receipt is not None:
        log.info("order already has a receipt", order_id=event.order_id, number=receipt.number)
    else:
        sequence = await uow.receipts.next_sequence(issuing.issuer)
        number = domain.receipt_number(issuing.issuer, sequence)
        receipt = domain.issue(order, number, issuing.tax_rate, issuing.now())
        await uow.receipts.add_receipt(receipt, issuing.issuer, sequence)
        log.info("receipt issued", order_id=event.order_id, number=number)
    await _publish(receipt, envelope, uow, issuing)


async def resend_receipt(
    envelope: Envelope, command: RequestReceipt, uow: ReceiptsUnitOfWork, *, issuing: Issuing
) -> None:
    """The saga did not get the receipt: publish it again, as first published (same id). None
    issued yet: nothing to send, the OrderConfirmed still to be read here will issue it."""
    receipt = await uow.receipts.receipt(command.order_id)
    if receipt is None:
        log.info("receipt asked for before it was issued", order_id=command.order_id)
        return
    log.info("receipt sent again", order_id=command.order_id, number=receipt.number)
    await _publish(receipt, envelope, uow, issuing)


async def _publish(
    receipt: domain.Receipt, caused_by: Envelope, uow: ReceiptsUnitOfWork, issuing: Issuing
) -> None:
    issued = ReceiptIssued(
        order_id=receipt.order_id,
        customer_id=receipt.customer_id,
        receipt_number=receipt.number,
        currency=receipt.currency,
        subtotal_cents=receipt.subtotal_cents,
        tax_cents=receipt.tax_cents,
        total_cents=receipt.total_cents,
        issued_at=receipt.issued_at,
    )
    # The same id for a repeat: downstream inboxes drop it.
    event_id = deterministic_id(PRODUCER, "issued", receipt.order_id)
    await uow.outbox.append(
        issuing.out,
        Envelope.wrap(
            issued, key=receipt.order_id, producer=PRODUCER, caused_by=caused_by, event_id=event_id
        ),
    )
