"""The order saga's transition table, one (status, message) pair at a time: forward steps,
compensations, deadlines, duplicates and replies out of order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.checkout.v1 import (
    OrderCancelled,
    OrderCommandRefused,
    OrderConfirmed,
    OrderRejected,
)
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.inventory.v1 import (
    Shortage,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from schemas.orchestrator.v1 import SagaDeadlinePassed
from schemas.payments.v1 import PaymentAuthorized, PaymentDeclined, PaymentVoided
from schemas.receipts.v1 import ReceiptIssued
from schemas.registry import Message
from services.orchestrator.saga import (
    PRODUCER,
    Command,
    Incoming,
    Saga,
    Status,
    Timeouts,
    apply,
    fail,
)
from shared.envelope import deterministic_id

ORDER = "ord-1"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TIMEOUTS = Timeouts(reserve=10, pay=20, confirm=30, receipt=40, compensate=50)


def placed() -> OrderPlaced:
    line = OrderLine(sku="TEA-001", quantity=2, unit_price_cents=450, line_total_cents=900)
    return OrderPlaced(
        order_id=ORDER, customer_id="alice", lines=[line], currency="EUR", total_cents=900
    )


def reserved() -> StockReserved:
    return StockReserved(order_id=ORDER, lines=[StockLine(sku="TEA-001", quantity=2)])


def out_of_stock() -> StockReservationFailed:
    shortage = Shortage(sku="TEA-001", requested=2, available=0)
    return StockReservationFailed(order_id=ORDER, reason="insufficient stock", shortages=[shortage])


def authorized() -> PaymentAuthorized:
    return PaymentAuthorized(order_id=ORDER, payment_id="pay-1", amount_cents=900)


def receipt() -> ReceiptIssued:
    return ReceiptIssued(
        order_id=ORDER,
        customer_id="alice",
        receipt_number="LL-00000001",
        currency="EUR",
        subtotal_cents=900,
        tax_cents=180,
        total_cents=1080,
        issued_at=T0,
    )


def released() -> StockReleased:
    return StockReleased(order_id=ORDER, lines=[StockLine(sku="TEA-001", quantity=2)])


def voided() -> PaymentVoided:
    return PaymentVoided(order_id=ORDER, payment_id="pay-1")


def rejected() -> OrderRejected:
    return OrderRejected(order_id=ORDER, reason="r")


class Run:
    """Feeds messages to the saga as the agent would, one new message id each."""

    def __init__(self) -> None:
        self.saga: Saga | None = None
        self.at = T0
        self.sent: list[Command] = []

    def __call__(self, message: Message, message_id: str | None = None) -> list[Command]:
        self.at += timedelta(seconds=1)
        incoming = Incoming(message_id or uuid.uuid4().hex, message, self.at)
        self.saga, commands = apply(self.saga, incoming, TIMEOUTS)
        self.sent += commands
        return commands

    @property
    def s(self) -> Saga:
        assert self.saga is not None
        return self.saga

    def deadline(self) -> list[Command]:
        status, n = self.s.status.value, self.s.deadline
        return self(SagaDeadlinePassed(order_id=ORDER, status=status, deadline=n))


def types(commands: list[Command]) -> list[str]:
    return [c.type for c in commands]


def at_status(status: Status) -> Run:
    """A run brought to `status` the ordinary way."""
    run = Run()
    run(placed())
    path = {
        Status.RESERVING: [],
        Status.PAYING: [reserved()],
        Status.CONFIRMING: [reserved(), authorized()],
        Status.RECEIPTING: [reserved(), authorized(), OrderConfirmed(order_id=ORDER)],
    }[status]
    for message in path:
        run(message)
    assert run.s.status is status
    return run


# ---------------------------------------------------------------- forward


def test_the_happy_path_reserves_pays_confirms_and_completes_on_the_receipt() -> None:
    run = Run()
    assert types(run(placed())) == ["ReserveStock"]
    assert run.s.status is Status.RESERVING
    assert types(run(reserved())) == ["RequestPayment"]
    assert types(run(authorized())) == ["ConfirmOrder"]
    assert run(OrderConfirmed(order_id=ORDER)) == []
    assert run.s.status is Status.RECEIPTING
    assert run(receipt()) == []
    assert run.s.status is Status.COMPLETED
    assert (run.s.receipt_number, run.s.payment_id, run.s.deadline_at) == (
        "LL-00000001",
        "pay-1",
        None,
    )
    reserve, pay = run.sent[:2]
    assert reserve.payload == {"order_id": ORDER, "lines": [{"sku": "TEA-001", "quantity": 2}]}
    assert pay.payload == {
        "order_id": ORDER,
        "customer_id": "alice",
        "amount_cents": 900,
        "currency": "EUR",
    }
    assert [(c.topic, c.event_id) for c in run.sent] == [
        ("inventory.commands", deterministic_id(PRODUCER, ORDER, "reserve")),
        ("payments.requests", deterministic_id(PRODUCER, ORDER, "pay")),
        ("checkout.commands", deterministic_id(PRODUCER, ORDER, "confirm")),
    ]


def test_a_receipt_before_its_order_confirmed_completes_on_the_confirmation() -> None:
    run = at_status(Status.CONFIRMING)
    assert run(receipt()) == []
    assert run.s.status is Status.CONFIRMING
    run(OrderConfirmed(order_id=ORDER))
    assert run.s.status is Status.COMPLETED


def test_a_receipt_applied_while_the_saga_is_a_step_behind_completes_it_once_confirmed() -> None:
    """A saga rebuilt from a changelog that missed its last write is back in paying while its
    replies come again, a ReceiptIssued (another topic) before the PaymentAuthorized: the
    receipt must be kept, since it will not come again."""
    run = at_status(Status.PAYING)
    assert run(receipt()) == []
    assert run.s.status is Status.PAYING
    run(authorized())
    run(OrderConfirmed(order_id=ORDER))
    assert (run.s.status, run.s.receipt_number) == (Status.COMPLETED, receipt().receipt_number)


def test_each_waiting_status_sets_its_own_deadline() -> None:
    for status, seconds in [
        (Status.RESERVING, 10),
        (Status.PAYING, 20),
        (Status.CONFIRMING, 30),
        (Status.RECEIPTING, 40),
    ]:
        run = at_status(status)
        assert run.s.deadline_at == run.at + timedelta(seconds=seconds)


# ---------------------------------------------------------------- compensations


def test_out_of_stock_rejects_the_order_and_ends_rejected_once_it_is() -> None:
    run = at_status(Status.RESERVING)
    assert types(run(out_of_stock())) == ["RejectOrder"]
    assert (run.s.status, run.s.awaiting) == (Status.REJECTING, {"OrderRejected"})
    assert run.sent[-1].payload == {"order_id": ORDER, "reason": "insufficient stock"}
    run(rejected())
    assert (run.s.status, run.s.reason) == (Status.REJECTED, "insufficient stock")


@pytest.mark.parametrize("first", ["released", "rejected"])
def test_a_declined_payment_releases_and_rejects_and_waits_for_both(first: str) -> None:
    run = at_status(Status.PAYING)
    assert types(run(PaymentDeclined(order_id=ORDER, reason="insufficient funds"))) == [
        "ReleaseStock",
        "RejectOrder",
    ]
    answers = [released(), rejected()] if first == "released" else [rejected(), released()]
    run(answers[0])
    assert run.s.status is Status.REJECTING
    run(answers[1])
    assert (run.s.status, run.s.reason) == (Status.REJECTED, "payment declined: insufficient funds")


def test_a_reservation_deadline_asks_again_once_then_releases_and_rejects() -> None:
    run = at_status(Status.RESERVING)
    [again] = run.deadline()
    assert (again.type, again.event_id) == (
        "ReserveStock",
        deterministic_id(PRODUCER, ORDER, "reserve-again"),
    )
    assert again.payload == run.sent[0].payload
    assert run.s.status is Status.RESERVING
    assert types(run.deadline()) == ["ReleaseStock", "RejectOrder"]
    assert run.s.reason == "stock reservation timed out"


def test_an_answer_to_the_second_ask_carries_on() -> None:
    run = at_status(Status.RESERVING)
    run.deadline()
    assert types(run(reserved())) == ["RequestPayment"]


def test_a_payment_that_never_answers_is_asked_again_then_released_voided_and_rejected() -> None:
    run = at_status(Status.PAYING)
    [again] = run.deadline()
    assert (again.type, again.payload) == ("RequestPayment", run.sent[1].payload)
    assert again.event_id == deterministic_id(PRODUCER, ORDER, "pay-again")
    assert types(run.deadline()) == ["ReleaseStock", "VoidPayment", "RejectOrder"]
    for answer in (released(), PaymentVoided(order_id=ORDER, payment_id=None), rejected()):
        run(answer)
    assert (run.s.status, run.s.reason) == (Status.REJECTED, "payment timed out")


def test_an_authorization_after_the_deadline_is_never_confirmed() -> None:
    run = at_status(Status.PAYING)
    run.deadline()  # asked again
    run.deadline()  # void already sent with the compensation
    assert run(authorized()) == []
    for answer in (released(), voided(), rejected()):
        run(answer)
    assert run.s.status is Status.REJECTED
    assert "ConfirmOrder" not in types(run.sent)


def test_an_authorization_nobody_asked_to_void_is_voided_after_the_fact() -> None:
    run = at_status(Status.RESERVING)
    run(out_of_stock())
    run(rejected())
    assert run.s.status is Status.REJECTED
    assert types(run(authorized())) == ["VoidPayment"]
    assert (run.s.status, run.s.awaiting) == (Status.REJECTING, {"PaymentVoided"})
    run(voided())
    assert run.s.status is Status.REJECTED


@pytest.mark.parametrize(
    ("status", "compensations"),
    [
        (Status.RESERVING, ["ReleaseStock"]),
        (Status.PAYING, ["ReleaseStock", "VoidPayment"]),
        (Status.CONFIRMING, ["ReleaseStock", "VoidPayment"]),
    ],
)
def test_a_customer_cancel_before_confirmation_undoes_what_may_be_held(
    status: Status, compensations: list[str]
) -> None:
    run = at_status(status)
    assert types(run(OrderCancelled(order_id=ORDER, reason="changed my mind"))) == compensations
    assert run.s.status is Status.CANCELLING
    answers = {"ReleaseStock": released(), "VoidPayment": voided()}
    for command in compensations:
        run(answers[command])
    assert (run.s.status, run.s.reason) == (Status.CANCELLED, "changed my mind")


def test_a_confirm_that_lost_the_race_to_the_cancel_is_compensated() -> None:
    run = at_status(Status.CONFIRMING)
    refused = OrderCommandRefused(
        order_id=ORDER, command="ConfirmOrder", status="cancelled", reason="order cancelled"
    )
    assert types(run(refused)) == ["ReleaseStock", "VoidPayment"]
    run(OrderCancelled(order_id=ORDER, reason="changed my mind"))  # changes nothing more
    run(released())
    run(voided())
    assert run.s.status is Status.CANCELLED


def test_a_rejection_the_customers_cancel_beat_ends_cancelled() -> None:
    run = at_status(Status.PAYING)
    run(PaymentDeclined(order_id=ORDER, reason="no"))
    run(OrderCancelled(order_id=ORDER, reason="changed my mind"))
    refused = OrderCommandRefused(
        order_id=ORDER, command="RejectOrder", status="cancelled", reason="order cancelled"
    )
    run(refused)
    run(released())
    assert run.s.status is Status.CANCELLED


def test_an_order_that_contradicts_the_saga_stops_it_visibly() -> None:
    # a compensation met a confirmed order: nothing may be undone further, nor ended quietly
    run = at_status(Status.PAYING)
    run.deadline()
    refused = OrderCommandRefused(
        order_id=ORDER, command="RejectOrder", status="confirmed", reason="order confirmed"
    )
    assert run(refused) == []
    assert run.s.status is Status.FAILED
    assert run.s.reason == "RejectOrder refused, the order is confirmed: saga and order disagree"


def test_a_stock_reservation_after_a_cancel_is_already_covered_by_the_release() -> None:
    run = at_status(Status.RESERVING)
    run(OrderCancelled(order_id=ORDER, reason="changed my mind"))
    assert run(reserved()) == []  # the release was sent after the reserve: it undoes it
    run(released())
    assert run.s.status is Status.CANCELLED


# ---------------------------------------------------------------- deadlines


def test_a_confirmation_deadline_resends_the_confirm_order_under_an_id_of_its_own() -> None:
    """Under the first id checkout's inbox would drop it unanswered, and a lost OrderConfirmed
    would hold the saga in confirming for good."""
    run = at_status(Status.CONFIRMING)
    [first] = [c for c in run.sent if c.type == "ConfirmOrder"]
    [again] = run.deadline()
    [third] = run.deadline()
    assert (again.type, again.payload) == ("ConfirmOrder", first.payload)
    assert len({first.event_id, again.event_id, third.event_id}) == 3
    assert run.s.status is Status.CONFIRMING


def test_a_late_receipt_is_asked_for_again_on_each_deadline_and_nothing_is_undone() -> None:
    """A ReceiptIssued lost on its way (seen in the cluster fault run: 3 sagas left receipting)
    is asked for again, under an id of its own each time, until it comes."""
    run = at_status(Status.RECEIPTING)
    [first] = run.deadline()
    assert (first.type, first.topic, first.payload) == (
        "RequestReceipt",
        "receipts.commands",
        {"order_id": ORDER},
    )
    assert (run.s.status, run.s.overdue) == (Status.RECEIPTING, True)
    assert run.s.deadline_at == run.at + timedelta(seconds=TIMEOUTS.receipt)
    [again] = run.deadline()
    assert again.event_id != first.event_id
    assert (
        types(run.sent)
        == ["ReserveStock", "RequestPayment", "ConfirmOrder"] + ["RequestReceipt"] * 2
    )  # nothing released, voided or rejected
    run(receipt())
    assert (run.s.status, run.s.deadline_at) == (Status.COMPLETED, None)


def test_a_compensation_deadline_resends_what_is_still_unanswered() -> None:
    run = at_status(Status.PAYING)
    run(PaymentDeclined(order_id=ORDER, reason="no"))
    run(released())
    [first] = [c for c in run.sent if c.type == "RejectOrder"]
    [again] = run.deadline()
    assert (again.type, again.payload) == ("RejectOrder", first.payload)
    assert again.event_id != first.event_id  # answered again, not dropped as a duplicate
    [third] = run.deadline()
    assert third.event_id not in {first.event_id, again.event_id}


def test_a_deadline_set_for_an_earlier_step_changes_nothing() -> None:
    run = at_status(Status.RESERVING)
    stale = SagaDeadlinePassed(order_id=ORDER, status="reserving", deadline=run.s.deadline)
    run(reserved())
    before = run.s
    assert run(stale) == []
    assert run.s.model_copy(update={"history": ()}) == before.model_copy(update={"history": ()})
    assert run.s.history[-1].note == "ignored"


# ---------------------------------------------------------------- crash safety


def test_a_message_applied_before_gives_back_the_same_commands_and_changes_nothing() -> None:
    run = Run()
    first = run(placed(), message_id="m-1")
    before = run.s
    assert run(placed(), message_id="m-1") == first  # re-processed after a crash
    assert run.s == before
    again = run(placed(), message_id="m-2")  # the same fact under another id: ignored
    assert again == []
    assert run.s.status is Status.RESERVING


@pytest.mark.parametrize("outcome", ["rejected", "confirmed"])
def test_an_outcome_ignored_while_the_saga_was_a_step_behind_is_applied_when_it_comes_again(
    outcome: str,
) -> None:
    """A worker that took the partitions over with its table a step behind (seen in the cluster
    fault run) reads checkout's answer before the reply that led to the command: the saga,
    still reserving (or paying), ignores it. Every deadline after that re-sends the command,
    and checkout answers with that very event again (same id): it must now be applied, not
    dropped as seen, or the saga waits for ever (14 sagas left rejecting and confirming)."""
    run = at_status(Status.RESERVING)
    if outcome == "rejected":
        answer: Message = rejected()
        assert run(answer, message_id="outcome-1") == []  # before its StockReservationFailed
        run(out_of_stock())
        expected = Status.REJECTED
    else:
        answer = OrderConfirmed(order_id=ORDER)
        run(reserved())
        assert run(answer, message_id="outcome-1") == []  # before its PaymentAuthorized
        run(authorized())
        run(receipt())
        expected = Status.COMPLETED
    assert run.s.status is not expected
    run.deadline()  # the command again; checkout re-publishes its outcome as first published
    run(answer, message_id="outcome-1")
    assert run.s.status is expected
    assert run(answer, message_id="outcome-1") == []  # applied now: a repeat changes nothing
    assert run.s.status is expected


def test_replies_for_an_order_the_saga_never_saw_start_nothing() -> None:
    run = Run()
    assert run(reserved()) == []
    assert run.saga is None


def test_a_message_that_keeps_failing_marks_the_saga_failed_and_visible() -> None:
    run = at_status(Status.PAYING)
    incoming = Incoming("m-bad", authorized(), run.at)
    failed = fail(run.s, incoming, "RuntimeError: boom")
    assert (failed.status, failed.reason, failed.deadline_at) == (
        Status.FAILED,
        "RuntimeError: boom",
        None,
    )
    assert failed.history[-1].note == "failed: RuntimeError: boom"
    after, commands = apply(failed, Incoming("m-2", voided(), run.at), TIMEOUTS)
    assert after is not None
    assert (after.status, commands) == (Status.FAILED, [])
