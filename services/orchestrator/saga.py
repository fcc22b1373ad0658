"""The order saga as a pure state machine (DESIGN §2): `(saga, message) -> (saga, commands)`.

No I/O and no clock: the time comes in with the message. `transition` is the whole table, each
forward step beside its compensation; `apply` wraps it with what makes re-processing safe:
a message id applied before gives back the very commands it gave then (same deterministic
ids, so downstream inboxes drop the repeats) and changes nothing.

Rules the table keeps:
- Every command has exactly one outcome event, so every waiting status has a deadline. A first
  deadline in reserving or paying asks again (under a new id, answered with the first outcome),
  a second one compensates; confirming and compensating re-send: a ConfirmOrder already sent is
  never compensated, since it may still be applied.
- A re-send on a deadline carries an id of its own (step + deadline number), never the first
  send's: the receiver's inbox would drop a repeated id without answering, so an answer lost on
  its way would be lost for good. Under a new id every receiver answers with its first outcome
  again (checkout, inventory and the payment provider all do), so a lost answer comes again.
- Compensations are done when their outcomes are in: rejecting/cancelling wait for each one
  (`awaiting`), then the saga ends rejected/cancelled.
- Replies may arrive out of order across topics (a ReceiptIssued before its OrderConfirmed, a
  late PaymentAuthorized after a deadline). A late authorization is voided, never confirmed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.checkout.v1 import (
    ConfirmOrder,
    OrderCancelled,
    OrderCommandRefused,
    OrderConfirmed,
    OrderRejected,
    RejectOrder,
)
from schemas.checkout.v2 import OrderPlaced
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
from schemas.receipts.v1 import ReceiptIssued, RequestReceipt
from schemas.registry import REGISTRY, Message
from shared.envelope import deterministic_id

PRODUCER = "orchestrator"
HISTORY_LIMIT = 200  # steps kept per saga; past it, messages that change nothing go unrecorded


class Status(StrEnum):
    RESERVING = "reserving"
    PAYING = "paying"
    CONFIRMING = "confirming"
    RECEIPTING = "receipting"
    REJECTING = "rejecting"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"  # a message kept failing in the agent: for an operator to look at


TERMINAL = frozenset({Status.COMPLETED, Status.REJECTED, Status.CANCELLED, Status.FAILED})
COMPENSATING = frozenset({Status.REJECTING, Status.CANCELLING})
UNDONE = COMPENSATING | {Status.REJECTED, Status.CANCELLED}  # a late reply is undone too

# The topic (catalogue name) of each command, and the outcome each compensation answers with.
COMMAND_TOPICS: dict[type[Message], str] = {
    ReserveStock: "inventory.commands",
    ReleaseStock: "inventory.commands",
    RequestPayment: "payments.requests",
    VoidPayment: "payments.requests",
    ConfirmOrder: "checkout.commands",
    RejectOrder: "checkout.commands",
    RequestReceipt: "receipts.commands",
}
OUTCOME_OF: dict[str, str] = {
    "release": "StockReleased",
    "void": "PaymentVoided",
    "reject": "OrderRejected",
}


@dataclass(frozen=True)
class Timeouts:
    """How long each waiting status waits for its reply (seconds)."""

    reserve: float = 30.0
    pay: float = 30.0
    confirm: float = 30.0
    receipt: float = 60.0
    compensate: float = 30.0

    def of(self, status: Status) -> float | None:
        return {
            Status.RESERVING: self.reserve,
            Status.PAYING: self.pay,
            Status.CONFIRMING: self.confirm,
            Status.RECEIPTING: self.receipt,
            Status.REJECTING: self.compensate,
            Status.CANCELLING: self.compensate,
        }.get(status)


class Command(BaseModel):
    """A command as sent (and as re-sent after a crash: byte for byte the same payload)."""

    model_config = ConfigDict(frozen=True)

    step: str  # reserve, reserve-again, pay, pay-again, confirm, release, void, reject, receipt
    topic: str  # catalogue name
    type: str
    version: int
    event_id: uuid.UUID
    payload: dict[str, Any]

    def message(self) -> Message:
        return REGISTRY.decode(self.type, self.version, self.payload)


class Step(BaseModel):
    """One message the saga applied, what it did, and what it sent."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    message_id: str
    type: str
    version: int
    payload: dict[str, Any]
    status: Status  # after the message
    note: str = ""  # "ignored", "stale deadline", "duplicate"…
    commands: tuple[Command, ...] = ()


class Saga(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    customer_id: str
    currency: str
    total_cents: int
    lines: tuple[tuple[str, int], ...]  # sku, quantity
    status: Status
    reason: str | None = None  # why it is rejecting/rejected/cancelled/failed
    final: Status | None = None  # where compensating ends: rejected or cancelled
    reserved: bool = False  # StockReserved seen
    payment_id: str | None = None  # PaymentAuthorized seen
    receipt_number: str | None = None
    sent: frozenset[str] = frozenset()  # command steps sent so far
    awaiting: frozenset[str] = frozenset()  # outcome types compensating still waits for
    deadline_at: datetime | None = None
    deadline: int = 0  # counts deadlines set; SagaDeadlinePassed names the one it is for
    overdue: bool = False  # the receipt did not come in time: asked for again on each deadline
    history: tuple[Step, ...] = ()
    # W3C trace context (traceparent, tracestate) of the step that last changed the saga,
    # set by the processor: a deadline, which no message causes, continues that trace
    trace: dict[str, str] = Field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class Incoming:
    message_id: str  # the envelope's event id
    message: Message
    at: datetime  # now, for deadlines (recorded, so a replay sees the same time)


Decision = tuple[Saga | None, list[Command]]


# ---------------------------------------------------------------- the table


def transition(saga: Saga | None, m: Message, now: datetime, t: Timeouts) -> Decision:
    if saga is None:
        if not isinstance(m, OrderPlaced):
            return None, []
        placed = _placed(m, now, t)
        return placed, [_reserve(placed, "reserve")]
    s = saga
    match s.status, m:
        # forward                                         # and its compensation
        case Status.RESERVING, StockReserved():
            return _wait(s.model_copy(update={"reserved": True}), Status.PAYING, now, t, _pay(s))
        case Status.RESERVING, StockReservationFailed():
            return _compensate(s, Status.REJECTED, m.reason, now, t, reject=True)
        case Status.PAYING, PaymentAuthorized():
            paid = s.model_copy(update={"payment_id": m.payment_id})
            return _wait(paid, Status.CONFIRMING, now, t, _confirm(s))
        case Status.PAYING, PaymentDeclined():
            reason = f"payment declined: {m.reason}"
            return _compensate(s, Status.REJECTED, reason, now, t, release=True, reject=True)
        case Status.CONFIRMING, OrderConfirmed():
            if s.receipt_number is not None:  # the receipt came first (another topic)
                return _end(s, Status.COMPLETED), []
            return _wait(s, Status.RECEIPTING, now, t, [])
        case Status.RESERVING | Status.PAYING | Status.CONFIRMING, ReceiptIssued():
            # the receipt came first (another topic), or the saga was rebuilt from a changelog
            # a step behind and its earlier replies are being applied again: kept for the
            # OrderConfirmed that follows
            return s.model_copy(update={"receipt_number": m.receipt_number}), []
        case Status.RECEIPTING, ReceiptIssued():
            done = s.model_copy(update={"receipt_number": m.receipt_number})
            return _end(done, Status.COMPLETED), []
        # the customer cancels before confirmation (or wins the race against ConfirmOrder)
        case Status.RESERVING | Status.PAYING | Status.CONFIRMING, OrderCancelled():
            return _cancel(s, m.reason, now, t)
        case Status.CONFIRMING, OrderCommandRefused() if m.status == "cancelled":
            return _cancel(s, f"ConfirmOrder refused: {m.reason}", now, t)
        # deadlines: forward steps compensate, a sent ConfirmOrder is re-sent, never undone
        case _, SagaDeadlinePassed() if m.deadline != s.deadline or s.terminal:
            return s, []  # stale: the saga moved on since it was set
        case Status.RESERVING, SagaDeadlinePassed() if "reserve-again" not in s.sent:
            # ask once more before undoing (a repeat is answered with the first outcome)
            return _wait(s, Status.RESERVING, now, t, [_reserve(s, "reserve-again")])
        case Status.RESERVING, SagaDeadlinePassed():
            reason = "stock reservation timed out"
            return _compensate(s, Status.REJECTED, reason, now, t, release=True, reject=True)
        case Status.PAYING, SagaDeadlinePassed() if "pay-again" not in s.sent:
            return _wait(s, Status.PAYING, now, t, _pay(s, "pay-again"))
        case Status.PAYING, SagaDeadlinePassed():
            reason = "payment timed out"
            return _compensate(
                s, Status.REJECTED, reason, now, t, release=True, void=True, reject=True
            )
        case Status.CONFIRMING, SagaDeadlinePassed():
            return _wait(s, Status.CONFIRMING, now, t, _confirm(s, again=True))
        case Status.RECEIPTING, SagaDeadlinePassed():
            # nothing to undo (the order is confirmed): ask receipts again, until it answers
            late = s.model_copy(update={"overdue": True})
            return _wait(late, Status.RECEIPTING, now, t, [_receipt_again(late)])
        case Status.REJECTING | Status.CANCELLING, SagaDeadlinePassed():
            return _wait(s, s.status, now, t, _resend_compensations(s))
        # compensations answering
        case Status.REJECTING | Status.CANCELLING, StockReleased() | PaymentVoided():
            return _answered(s, m.TYPE), []
        case Status.REJECTING | Status.CANCELLING, OrderRejected():
            return _answered(s, "OrderRejected"), []
        case Status.REJECTING, OrderCommandRefused() if m.status == "cancelled":
            # the customer's cancel won: the order is cancelled, not rejected
            return _answered(s.model_copy(update={"final": Status.CANCELLED}), "OrderRejected"), []
        case _, OrderCommandRefused() if m.status != "cancelled" and not s.terminal:
            # checkout's order contradicts the saga (e.g. confirmed while it compensates): no
            # rule can mend that; stop, visibly, for an operator
            reason = f"{m.command} refused, the order is {m.status}: saga and order disagree"
            return _end(s.model_copy(update={"reason": reason}), Status.FAILED), []
        case Status.REJECTING, OrderCancelled():
            return s.model_copy(update={"final": Status.CANCELLED}), []
    return _late(s, m, now, t)


def _late(s: Saga, m: Message, now: datetime, t: Timeouts) -> Decision:
    """A reply after the saga moved on. An authorization nobody will confirm is voided, stock
    nobody will use is released; everything else changes nothing."""
    if s.status in UNDONE:
        if isinstance(m, PaymentAuthorized) and "void" not in s.sent:
            paid = s.model_copy(update={"payment_id": m.payment_id})
            return _reopen(paid, now, t, "void")
        if isinstance(m, StockReserved) and "release" not in s.sent:
            return _reopen(s.model_copy(update={"reserved": True}), now, t, "release")
    return s, []


# ---------------------------------------------------------------- steps


def _placed(m: OrderPlaced, now: datetime, t: Timeouts) -> Saga:
    saga = Saga(
        order_id=m.order_id,
        customer_id=m.customer_id,
        currency=m.currency,
        total_cents=m.total_cents,
        lines=tuple((line.sku, line.quantity) for line in m.lines),
        status=Status.RESERVING,
    )
    return _with_deadline(saga.model_copy(update={"sent": frozenset({"reserve"})}), now, t)


def _reserve(s: Saga, step: str) -> Command:
    lines = [StockLine(sku=sku, quantity=quantity) for sku, quantity in s.lines]
    return _command(s.order_id, step, ReserveStock(order_id=s.order_id, lines=lines))


def _pay(s: Saga, step: str = "pay") -> list[Command]:
    request = RequestPayment(
        order_id=s.order_id,
        customer_id=s.customer_id,
        amount_cents=s.total_cents,
        currency=s.currency,
    )
    return [_command(s.order_id, step, request)]


def _confirm(s: Saga, *, again: bool = False) -> list[Command]:
    confirm = ConfirmOrder(order_id=s.order_id)
    return [_command(s.order_id, "confirm", confirm, attempt=s.deadline if again else None)]


def _receipt_again(s: Saga) -> Command:
    return _command(s.order_id, "receipt", RequestReceipt(order_id=s.order_id), attempt=s.deadline)


def _compensation(s: Saga, step: str, *, again: bool = False) -> Command:
    reason = s.reason or "compensating"
    message: Message = {
        "release": ReleaseStock(order_id=s.order_id, reason=reason),
        "void": VoidPayment(order_id=s.order_id, reason=reason),
        "reject": RejectOrder(order_id=s.order_id, reason=reason),
    }[step]
    return _command(s.order_id, step, message, attempt=s.deadline if again else None)


def _compensate(
    s: Saga,
    final: Status,
    reason: str,
    now: datetime,
    t: Timeouts,
    *,
    release: bool = False,
    void: bool = False,
    reject: bool = False,
) -> Decision:
    """Start undoing: send each compensation not sent yet and wait for every outcome."""
    status = Status.REJECTING if final is Status.REJECTED else Status.CANCELLING
    wanted = {"release": release, "void": void, "reject": reject}
    s = s.model_copy(update={"reason": reason[:500], "final": final})
    commands = [_compensation(s, step) for step, on in wanted.items() if on and step not in s.sent]
    s = s.model_copy(
        update={
            "sent": s.sent | {c.step for c in commands},
            "awaiting": s.awaiting | {OUTCOME_OF[c.step] for c in commands},
        }
    )
    return _wait(s, status, now, t, commands)


def _cancel(s: Saga, reason: str, now: datetime, t: Timeouts) -> Decision:
    # ReleaseStock answers also when nothing is held, VoidPayment also when nothing was
    # authorized: sending both is always safe, and a reply still in flight is covered
    release = s.status in {Status.RESERVING, Status.PAYING, Status.CONFIRMING}
    void = s.status in {Status.PAYING, Status.CONFIRMING}
    return _compensate(s, Status.CANCELLED, reason, now, t, release=release, void=void)


def _reopen(s: Saga, now: datetime, t: Timeouts, step: str) -> Decision:
    """Compensate once more after the fact (a late reply): back to compensating."""
    final = s.final or (Status.CANCELLED if s.status is Status.CANCELLED else Status.REJECTED)
    reason = s.reason or "late reply"
    return _compensate(
        s,
        final,
        reason,
        now,
        t,
        release=step == "release",
        void=step == "void",
    )


def _resend_compensations(s: Saga) -> list[Command]:
    wanted = {step for step, outcome in OUTCOME_OF.items() if outcome in s.awaiting}
    steps = [step for step in ("release", "void", "reject") if step in wanted]
    return [_compensation(s, step, again=True) for step in steps]


def _answered(s: Saga, outcome: str) -> Saga:
    awaiting = s.awaiting - {outcome}
    s = s.model_copy(update={"awaiting": awaiting})
    if awaiting:
        return s
    return _end(s, s.final or Status.REJECTED)


def _wait(s: Saga, status: Status, now: datetime, t: Timeouts, sent: list[Command]) -> Decision:
    moved = s.model_copy(update={"status": status, "sent": s.sent | {c.step for c in sent}})
    return _with_deadline(moved, now, t), sent


def _with_deadline(s: Saga, now: datetime, t: Timeouts) -> Saga:
    seconds = t.of(s.status)
    at = None if seconds is None else now + timedelta(seconds=seconds)
    return s.model_copy(update={"deadline_at": at, "deadline": s.deadline + 1})


def _end(s: Saga, status: Status) -> Saga:
    return s.model_copy(update={"status": status, "deadline_at": None, "awaiting": frozenset()})


def _command(order_id: str, step: str, message: Message, *, attempt: int | None = None) -> Command:
    """`attempt`: the deadline a re-send answers (its id then differs from every other send's:
    see the module's rules); None for the first send."""
    type_, version, payload = REGISTRY.encode(message)
    parts = (step,) if attempt is None else (step, "again", str(attempt))
    return Command(
        step=step,
        topic=COMMAND_TOPICS[type(message)],
        type=type_,
        version=version,
        # saga id + step (+ deadline): replaying a message re-sends these very ids
        event_id=deterministic_id(PRODUCER, order_id, *parts),
        payload=payload,
    )


# ---------------------------------------------------------------- applying


IGNORED = "ignored"


def applied_before(saga: Saga | None, message_id: str) -> bool:
    return saga is not None and any(step.message_id == message_id for step in saga.history)


def apply(saga: Saga | None, incoming: Incoming, t: Timeouts) -> Decision:
    """Apply `incoming` once. Seen before: the same commands again and no change.

    A message the saga ignored does not count as seen: it is judged again when it comes again.
    A saga rebuilt a step behind (a changelog write cut off, a takeover) may read an answer
    before the reply that led to its command, and ignore it; the command is re-sent on the
    deadline and answered with that very event again (checkout re-publishes its outcome under
    its first id), which must then be applied. Ignoring it again is what an ignored message
    costs otherwise: one more history step (up to HISTORY_LIMIT)."""
    if saga is not None:
        for step in saga.history:
            if step.message_id == incoming.message_id and step.note != IGNORED:
                return saga, list(step.commands)
    m = incoming.message
    after, commands = transition(saga, m, incoming.at, t)
    if after is None:
        return None, []
    changed = after != saga or bool(commands)
    if not changed and saga is not None and len(saga.history) >= HISTORY_LIMIT:
        return saga, []
    type_, version, payload = REGISTRY.encode(m)
    step = Step(
        at=incoming.at,
        message_id=incoming.message_id,
        type=type_,
        version=version,
        payload=payload,
        status=after.status,
        note="" if changed else IGNORED,
        commands=tuple(commands),
    )
    return after.model_copy(update={"history": (*after.history, step)}), commands


def fail(saga: Saga, incoming: Incoming, error: str) -> Saga:
    """The agent could not apply `incoming` even after retries: the saga stops, visibly."""
    type_, version, payload = REGISTRY.encode(incoming.message)
    step = Step(
        at=incoming.at,
        message_id=incoming.message_id,
        type=type_,
        version=version,
        payload=payload,
        status=Status.FAILED,
        note=f"failed: {error}"[:500],
    )
    failed = _end(saga, Status.FAILED).model_copy(update={"reason": error[:500]})
    return failed.model_copy(update={"history": (*saga.history, step)})
