"""Routing a record: work for a handler, a quiet skip, or a dead letter with its reason.

Only a known type that this consumer does not handle, on an event topic, is skipped; every
other record nobody here can handle is a dead letter, never a silent drop.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from schemas.checkout.v1 import ConfirmOrder, OrderConfirmed, RejectOrder
from schemas.warehouse.v1 import StockReceived
from shared.envelope import Envelope, Headers
from shared.kafka.dead_letters import Reason
from shared.kafka.decoding import Ignored, Rejected, Routes, Subscription, Work, route, routes

PREFIX = "t0123456789."  # as the tests' catalogue copies name topics
COMMANDS = PREFIX + "checkout.commands"
WAREHOUSE = PREFIX + "warehouse.events"
CHECKOUT_EVENTS = PREFIX + "checkout.events"


async def _handler(envelope: Envelope, message: Any, uow: object) -> None:
    raise AssertionError("routing never calls a handler")


TABLE: Routes[object] = routes(
    [
        Subscription(COMMANDS, ConfirmOrder, _handler),
        Subscription(WAREHOUSE, StockReceived, _handler),
        Subscription(CHECKOUT_EVENTS, OrderConfirmed, _handler),
    ]
)


def record(topic: str, value: bytes | None, headers: Headers) -> ConsumerRecord[bytes, bytes]:
    size = len(value) if value is not None else -1
    return ConsumerRecord(topic, 0, 7, 0, 0, b"k", value, None, 1, size, headers)


def received() -> Envelope:
    message = StockReceived(sku="TEA-001", quantity=5, shipment_id="ship-1")
    return Envelope.wrap(message, key="TEA-001", producer="warehouse")


def with_type(envelope: Envelope, type_: str) -> tuple[bytes, Headers]:
    """The envelope's value with its body `type` changed, and headers naming the same type."""
    value = orjson.dumps({**envelope.model_dump(mode="json"), "type": type_})
    headers = [(k, type_.encode() if k == "type" else v) for k, v in envelope.headers()]
    return value, headers


def test_a_handled_type_is_work() -> None:
    envelope = received()
    outcome = route(record(WAREHOUSE, envelope.to_bytes(), envelope.headers()), TABLE)
    assert isinstance(outcome, Work)
    assert outcome.message == StockReceived(sku="TEA-001", quantity=5, shipment_id="ship-1")


def test_a_known_type_not_handled_here_on_an_event_topic_is_skipped_quietly() -> None:
    rejected = Envelope.wrap(RejectOrder(order_id="o-1", reason="r"), key="o-1", producer="x")
    # RejectOrder is known; on an event topic this consumer simply does not care about it
    outcome = route(record(CHECKOUT_EVENTS, rejected.to_bytes(), rejected.headers()), TABLE)
    assert outcome == Ignored(outcome.record, "RejectOrder")


@pytest.mark.parametrize("with_header", [True, False], ids=["header", "no-header"])
def test_a_type_no_registry_knows_is_a_dead_letter(with_header: bool) -> None:
    value, headers = with_type(received(), "StockRecieved")  # the typo of a foreign producer
    outcome = route(record(WAREHOUSE, value, headers if with_header else []), TABLE)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is Reason.UNKNOWN_TYPE
    assert "StockRecieved" in outcome.error


def test_a_type_header_that_disagrees_with_the_body_is_a_dead_letter() -> None:
    envelope = received()
    headers = [(k, b"StockRecieved" if k == "type" else v) for k, v in envelope.headers()]
    outcome = route(record(WAREHOUSE, envelope.to_bytes(), headers), TABLE)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is Reason.TYPE_MISMATCH
    assert "'StockRecieved'" in outcome.error
    assert "'StockReceived'" in outcome.error


def test_a_known_but_unhandled_type_on_a_command_topic_is_a_dead_letter() -> None:
    # RejectOrder is a real command of checkout.commands, but this consumer has no handler:
    # a command has exactly one handler, so nobody else will ever act on it
    command = Envelope.wrap(RejectOrder(order_id="o-1", reason="r"), key="o-1", producer="saga")
    outcome = route(record(COMMANDS, command.to_bytes(), command.headers()), TABLE)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is Reason.UNHANDLED_COMMAND
    assert "RejectOrder" in outcome.error


def test_an_event_type_on_a_command_topic_is_a_dead_letter_too() -> None:
    envelope = received()
    outcome = route(record(COMMANDS, envelope.to_bytes(), envelope.headers()), TABLE)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is Reason.UNHANDLED_COMMAND


def test_a_tombstone_is_an_invalid_envelope() -> None:
    outcome = route(record(WAREHOUSE, None, []), TABLE)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is Reason.INVALID_ENVELOPE
    assert "no value" in outcome.error
