"""What the simulated provider decides. Pure: no I/O, no clock, no randomness, so a replayed
request decides what the first one did.

One payment per order, decided once:
- a customer id starting with `decline` is declined, one starting with `silent` is never
  answered (tests steer single orders this way); any other order is approved with probability
  `approval_rate`, drawn from a hash of its order id, so every replay draws the same;
- mode `silent` leaves every RequestPayment unanswered (a provider that swallows requests, for
  the saga's deadline); a request never answered is decided when it comes again;
- VoidPayment is answered in every mode, also with nothing to void: the saga's compensation
  waits for that answer. A void before any decision marks the order voided, and a request
  after it is declined, so a late request never authorizes an order given up on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal

Mode = Literal["answer", "silent"]
Status = Literal["unanswered", "authorized", "declined", "voided"]
# The answer an order gets; each names one message, which keeps one deterministic event id.
Answer = Literal["authorized", "declined", "declined-after-void", "voided"]

DECLINE_PREFIX = "decline"
SILENT_PREFIX = "silent"
DECLINED_BY_CUSTOMER = "declined by the simulator: the customer id starts with 'decline'"
DECLINED_AFTER_VOID = "voided: the order's payment was voided before this request"


def declined_by_rate(rate: float) -> str:
    return f"declined by the simulator: outside the approval rate {rate:g}"


@dataclass(frozen=True)
class Knobs:
    """How the simulator behaves now; settings give the start values, HTTP changes them."""

    approval_rate: float = 1.0  # 0..1
    latency_ms: int = 0  # an answer is sent no earlier than this after its decision
    mode: Mode = "answer"


@dataclass
class Controls:
    """The knobs in force. Every request reads them when it is handled, so a change applies
    from the next request on; answers already scheduled keep their time."""

    knobs: Knobs


@dataclass(frozen=True)
class Payment:
    """The one payment of an order. Customer, amount and currency are unknown when a void came
    before any request."""

    order_id: str
    status: Status
    customer_id: str | None = None
    amount_cents: int | None = None
    currency: str | None = None
    payment_id: str | None = None  # of the authorization (kept once voided)
    reason: str | None = None  # why declined


def draw(order_id: str) -> float:
    """A number in [0, 1) fixed by the order id."""
    digest = hashlib.sha256(b"approval|" + order_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def approves(order_id: str, approval_rate: float) -> bool:
    return draw(order_id) < approval_rate


def payment_id(order_id: str) -> str:
    """The authorization's id, the same for every replay of the order's decision."""
    return "sim-" + hashlib.sha256(b"payment|" + order_id.encode()).hexdigest()[:32]


def decide(
    order_id: str, customer_id: str, amount_cents: int, currency: str, approval_rate: float
) -> Payment:
    """The decision for an order seen for the first time (or never answered before)."""
    new = Payment(order_id, "declined", customer_id, amount_cents, currency)
    if customer_id.startswith(DECLINE_PREFIX):
        return replace(new, reason=DECLINED_BY_CUSTOMER)
    if not approves(order_id, approval_rate):
        return replace(new, reason=declined_by_rate(approval_rate))
    return replace(new, status="authorized", payment_id=payment_id(order_id))


def on_request(
    current: Payment | None,
    *,
    order_id: str,
    customer_id: str,
    amount_cents: int,
    currency: str,
    knobs: Knobs,
) -> tuple[Payment, Answer | None]:
    """The order's payment after a RequestPayment, and the answer to send (None: stay silent).
    A repeat of a decided order changes nothing and answers what the first one did."""
    if knobs.mode == "silent" or customer_id.startswith(SILENT_PREFIX):
        unanswered = Payment(order_id, "unanswered", customer_id, amount_cents, currency)
        return current or unanswered, None
    if current is None or current.status == "unanswered":
        decided = decide(order_id, customer_id, amount_cents, currency, knobs.approval_rate)
        return decided, "authorized" if decided.status == "authorized" else "declined"
    if current.status == "voided":
        return current, "declined-after-void"
    return current, "authorized" if current.status == "authorized" else "declined"


def on_void(current: Payment | None, order_id: str) -> tuple[Payment, Answer]:
    """The order's payment after a VoidPayment; the answer is always PaymentVoided (naming the
    voided authorization, or none). A declined order has nothing to void and stays declined."""
    if current is None:
        return Payment(order_id, "voided"), "voided"
    if current.status in ("unanswered", "authorized"):
        return replace(current, status="voided"), "voided"
    return current, "voided"
