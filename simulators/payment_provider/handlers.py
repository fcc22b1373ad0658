"""The simulated provider's use cases, run inside the consumer runner's unit of work (inbox
already claimed, so a redelivered request is never handled twice).

Answers carry deterministic event ids (simulator, order id, answer kind): a request repeated
under any event id answers what the first one did, under the same id, so the saga's inbox drops
the repeat. Answers are not published here: they are queued in the same transaction, due after
the latency knob, and the publisher sends them (never through our outbox relay: a foreign
provider has its own client).
"""

from __future__ import annotations

from prometheus_client import Counter

from schemas.payments.v1 import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentVoided,
    RequestPayment,
    VoidPayment,
)
from schemas.registry import Message
from shared.envelope import Envelope, deterministic_id
from shared.observability.logging import get_logger
from simulators.payment_provider import domain
from simulators.payment_provider.ports import SimulatorUnitOfWork

PRODUCER = "payment-provider-simulator"
# counted when the handler decides (a transaction rolled back and retried counts again);
# outcome: authorized | declined | declined-after-void | voided | unanswered
REQUESTS = Counter(
    "leadline_simulator_payment_requests_total",
    "Requests the payment-provider simulator handled, by the answer it decided.",
    ["type", "outcome"],
)
log = get_logger(__name__)


async def request_payment(
    envelope: Envelope,
    command: RequestPayment,
    uow: SimulatorUnitOfWork,
    *,
    out: str,
    controls: domain.Controls,
) -> None:
    knobs = controls.knobs
    current = await uow.payments.payment(command.order_id)
    payment, answer = domain.on_request(
        current,
        order_id=command.order_id,
        customer_id=command.customer_id,
        amount_cents=command.amount_cents,
        currency=command.currency,
        knobs=knobs,
    )
    if payment != current:
        await uow.payments.save(payment)
    REQUESTS.labels(RequestPayment.TYPE, answer or "unanswered").inc()
    log.info("payment request handled", order_id=command.order_id, answer=answer, mode=knobs.mode)
    if answer is not None:
        await _schedule(uow, out, envelope, payment, answer, knobs.latency_ms)


async def void_payment(
    envelope: Envelope,
    command: VoidPayment,
    uow: SimulatorUnitOfWork,
    *,
    out: str,
    controls: domain.Controls,
) -> None:
    # answered in every mode: the saga's compensation waits for it
    knobs = controls.knobs
    current = await uow.payments.payment(command.order_id)
    payment, answer = domain.on_void(current, command.order_id)
    if payment != current:
        await uow.payments.save(payment)
    REQUESTS.labels(VoidPayment.TYPE, answer).inc()
    log.info("payment void handled", order_id=command.order_id, voided=payment.payment_id)
    await _schedule(uow, out, envelope, payment, answer, knobs.latency_ms)


def answer_message(payment: domain.Payment, answer: domain.Answer) -> Message:
    order_id = payment.order_id
    if answer == "authorized":
        # an authorized payment has both: domain.decide sets them together
        assert payment.payment_id is not None
        assert payment.amount_cents is not None
        return PaymentAuthorized(
            order_id=order_id, payment_id=payment.payment_id, amount_cents=payment.amount_cents
        )
    if answer == "declined":
        return PaymentDeclined(order_id=order_id, reason=payment.reason or "declined")
    if answer == "declined-after-void":
        return PaymentDeclined(order_id=order_id, reason=domain.DECLINED_AFTER_VOID)
    return PaymentVoided(order_id=order_id, payment_id=payment.payment_id)


async def _schedule(
    uow: SimulatorUnitOfWork,
    topic: str,
    cause: Envelope,
    payment: domain.Payment,
    answer: domain.Answer,
    latency_ms: int,
) -> None:
    envelope = Envelope.wrap(
        answer_message(payment, answer),
        key=payment.order_id,
        producer=PRODUCER,
        caused_by=cause,
        event_id=deterministic_id(PRODUCER, payment.order_id, answer),
    )
    await uow.payments.schedule(topic, envelope, latency_ms)
