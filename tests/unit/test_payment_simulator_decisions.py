"""The payment-provider simulator's decisions (simulators/payment_provider/domain.py): pure, so
every rule is checked here without Kafka or PostgreSQL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simulators.payment_provider import domain
from simulators.payment_provider.domain import Knobs, Payment
from simulators.payment_provider.handlers import answer_message
from simulators.payment_provider.settings import SimulatorSettings

ANSWER = Knobs()


def request(
    current: Payment | None,
    order_id: str = "order-1",
    customer_id: str = "alice",
    knobs: Knobs = ANSWER,
) -> tuple[Payment, domain.Answer | None]:
    return domain.on_request(
        current,
        order_id=order_id,
        customer_id=customer_id,
        amount_cents=1250,
        currency="EUR",
        knobs=knobs,
    )


def test_an_order_is_authorized_with_a_payment_id_fixed_by_the_order() -> None:
    payment, answer = request(None)
    assert answer == "authorized"
    assert payment.status == "authorized"
    assert payment.payment_id == domain.payment_id("order-1")
    assert payment.payment_id != domain.payment_id("order-2")
    assert (payment.customer_id, payment.amount_cents, payment.currency) == ("alice", 1250, "EUR")
    message = answer_message(payment, "authorized")
    assert message.model_dump() == {
        "order_id": "order-1",
        "payment_id": payment.payment_id,
        "amount_cents": 1250,
    }


def test_a_customer_id_starting_with_decline_is_declined_whatever_the_rate() -> None:
    payment, answer = request(None, customer_id="decline-bob")
    assert answer == "declined"
    assert payment.reason == domain.DECLINED_BY_CUSTOMER
    assert payment.payment_id is None


def test_a_customer_id_starting_with_silent_is_never_answered() -> None:
    payment, answer = request(None, customer_id="silent-carol")
    assert answer is None
    assert payment.status == "unanswered"
    again, answer = request(payment, customer_id="silent-carol")
    assert (again, answer) == (payment, None)


def test_silent_mode_answers_no_request_and_a_later_repeat_is_decided() -> None:
    silent = Knobs(mode="silent")
    payment, answer = request(None, knobs=silent)
    assert (payment.status, answer) == ("unanswered", None)
    decided, _ = request(None)
    # a repeat of an authorized order is not answered either while the mode is silent
    assert request(decided, knobs=silent) == (decided, None)
    # the mode switched back: the request that was swallowed is decided when it comes again
    assert request(payment) == (decided, "authorized")


def test_the_approval_rate_decides_per_order_the_same_every_time() -> None:
    orders = [f"order-{n}" for n in range(2000)]
    half = Knobs(approval_rate=0.5)
    first = [request(None, order_id=o, knobs=half)[1] for o in orders]
    assert first == [request(None, order_id=o, knobs=half)[1] for o in orders]
    approved = first.count("authorized")
    assert 900 < approved < 1100  # a fair draw: binomial(2000, 0.5) stays well inside this
    assert all(
        request(None, order_id=o, knobs=Knobs(approval_rate=0.0))[1] == "declined" for o in orders
    )
    assert all(request(None, order_id=o)[1] == "authorized" for o in orders)
    # raising the rate only adds approvals: an order approved at 0.5 is approved at 0.8
    higher = Knobs(approval_rate=0.8)
    for order, answer in zip(orders, first, strict=True):
        if answer == "authorized":
            assert request(None, order_id=order, knobs=higher)[1] == "authorized"
    declined, _ = request(None, order_id="order-x", knobs=Knobs(approval_rate=0.0))
    assert declined.reason == domain.declined_by_rate(0.0)


def test_a_repeated_request_answers_the_first_decision_even_after_the_knobs_changed() -> None:
    authorized, _ = request(None)
    assert request(authorized, knobs=Knobs(approval_rate=0.0)) == (authorized, "authorized")
    declined, _ = request(None, customer_id="decline-dan")
    # the repeat names another customer: the first decision still stands
    assert request(declined, customer_id="alice") == (declined, "declined")


def test_a_void_voids_the_authorization_and_names_it() -> None:
    authorized, _ = request(None)
    voided, answer = domain.on_void(authorized, "order-1")
    assert (voided.status, answer) == ("voided", "voided")
    assert voided.payment_id == authorized.payment_id
    assert answer_message(voided, answer).model_dump() == {
        "order_id": "order-1",
        "payment_id": authorized.payment_id,
    }
    # voided again: the same answer, nothing changes
    assert domain.on_void(voided, "order-1") == (voided, "voided")


def test_a_void_with_nothing_to_void_is_answered_without_a_payment_id() -> None:
    voided, answer = domain.on_void(None, "order-1")
    assert voided == Payment("order-1", "voided")
    assert answer_message(voided, answer).model_dump() == {
        "order_id": "order-1",
        "payment_id": None,
    }
    unanswered, _ = request(None, customer_id="silent-eve")
    assert domain.on_void(unanswered, "order-1")[0].status == "voided"
    declined, _ = request(None, customer_id="decline-fay")
    kept, answer = domain.on_void(declined, "order-1")
    assert (kept, answer) == (declined, "voided")  # stays declined, nothing to void
    assert answer_message(kept, answer).model_dump() == {"order_id": "order-1", "payment_id": None}


def test_a_request_after_a_void_is_declined() -> None:
    voided, _ = domain.on_void(None, "order-1")
    payment, answer = request(voided)
    assert (payment, answer) == (voided, "declined-after-void")
    declined = answer_message(payment, "declined-after-void")
    assert declined.model_dump() == {"order_id": "order-1", "reason": domain.DECLINED_AFTER_VOID}


def test_settings_give_the_start_knobs_and_refuse_bad_ones() -> None:
    settings = SimulatorSettings(approval_rate=0.25, latency_ms=150, mode="silent")
    assert settings.knobs() == Knobs(approval_rate=0.25, latency_ms=150, mode="silent")
    assert SimulatorSettings().knobs() == Knobs()
    assert SimulatorSettings().http_port == 8009
    assert SimulatorSettings().partitioner == "crc32"
    for bad in (
        {"approval_rate": 1.5},
        {"approval_rate": float("nan")},
        {"latency_ms": -1},
        {"mode": "loud"},
        {"partitioner": "random"},
    ):
        with pytest.raises(ValidationError):
            SimulatorSettings(**bad)  # type: ignore[arg-type]
