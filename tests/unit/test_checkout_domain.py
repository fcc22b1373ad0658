"""The Order aggregate's rules and pricing, without I/O."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.checkout.v1 import OrderCancelled, OrderConfirmed, OrderRejected
from schemas.checkout.v2 import OrderPlaced
from schemas.registry import REGISTRY
from services.checkout.domain import (
    MixedCurrencyError,
    Order,
    OrderRuleViolation,
    OrderStatus,
    Price,
    UnknownSkuError,
    price,
)

CATALOGUE = {"TEA-001": Price(850, "EUR"), "CUP-001": Price(1450, "EUR")}
TERMINAL = (OrderConfirmed, OrderRejected, OrderCancelled)


def placed(order_id: str = "o-1") -> Order:
    order = Order.place(order_id, "alice", price([("TEA-001", 2), ("CUP-001", 1)], CATALOGUE))
    order.mark_committed()
    return order


def test_prices_come_from_the_catalogue() -> None:
    priced = price([("TEA-001", 2), ("CUP-001", 1)], CATALOGUE)
    assert [(line.sku, line.line_total_cents) for line in priced.lines] == [
        ("TEA-001", 1700),
        ("CUP-001", 1450),
    ]
    assert (priced.currency, priced.total_cents) == ("EUR", 3150)


def test_unknown_skus_are_named() -> None:
    with pytest.raises(UnknownSkuError, match="NOPE-1, NOPE-2") as info:
        price([("NOPE-1", 1), ("TEA-001", 1), ("NOPE-2", 1)], CATALOGUE)
    assert info.value.skus == ["NOPE-1", "NOPE-2"]


def test_one_order_is_priced_in_one_currency() -> None:
    with pytest.raises(MixedCurrencyError):
        price([("TEA-001", 1), ("USD-1", 1)], {**CATALOGUE, "USD-1": Price(100, "USD")})


def test_placing_records_order_placed_v2() -> None:
    order = Order.place("o-1", "alice", price([("TEA-001", 3)], CATALOGUE))
    [event] = order.pending
    assert isinstance(event, OrderPlaced)
    assert (event.currency, event.total_cents, order.version) == ("EUR", 2550, 1)
    assert order.status is OrderStatus.PLACED


def test_confirmation_after_cancellation_is_refused() -> None:
    order = placed()
    order.cancel("changed my mind")
    with pytest.raises(OrderRuleViolation, match="cannot confirm"):
        order.confirm()
    assert [type(e) for e in order.pending] == [OrderCancelled]


def test_cancellation_after_confirmation_is_refused() -> None:
    order = placed()
    order.confirm()
    with pytest.raises(OrderRuleViolation, match="cannot cancel"):
        order.cancel("too late")
    with pytest.raises(OrderRuleViolation, match="cannot reject"):
        order.reject("too late")


def test_repeating_the_current_state_records_nothing() -> None:
    order = placed()
    order.confirm()
    order.confirm()
    assert [type(e) for e in order.pending] == [OrderConfirmed]
    assert order.version == 2


def test_old_order_placed_loads_through_its_upcaster() -> None:
    v1 = {
        "order_id": "o-1",
        "customer_id": "alice",
        "lines": [{"sku": "TEA-001", "quantity": 2, "unit_price_cents": 850}],
        "total_cents": 1700,
    }
    order = Order.from_history("o-1", [REGISTRY.decode("OrderPlaced", 1, v1)])
    assert order.currency == "EUR"
    assert order.lines[0].line_total_cents == 1700


commands = st.lists(st.sampled_from(["confirm", "reject", "cancel"]), max_size=6)


@given(commands)
def test_an_order_ends_in_at_most_one_terminal_state(steps: list[str]) -> None:
    order = Order.place("o-1", "alice", price([("TEA-001", 1)], CATALOGUE))
    for step in steps:
        with contextlib.suppress(OrderRuleViolation):
            getattr(order, step)(*([] if step == "confirm" else ["why"]))
    terminal = [e for e in order.pending if isinstance(e, TERMINAL)]
    assert len(terminal) == (1 if steps else 0)
    rebuilt = Order.from_history("o-1", order.pending)
    assert (rebuilt.status, rebuilt.version, rebuilt.reason) == (
        order.status,
        order.version,
        order.reason,
    )
