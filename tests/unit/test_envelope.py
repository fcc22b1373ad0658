"""The envelope: bytes round trip, headers, causation/correlation, and refusals."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.checkout import v1 as checkout_v1
from schemas.checkout import v2 as checkout_v2
from schemas.inventory import v1 as inventory_v1
from shared.envelope import Envelope, InvalidEnvelopeError, deterministic_id


def order_placed(order_id: str = "ord-1") -> checkout_v2.OrderPlaced:
    return checkout_v2.OrderPlaced(
        order_id=order_id,
        customer_id="cus-1",
        lines=[
            checkout_v2.OrderLine(
                sku="TEA-001", quantity=2, unit_price_cents=850, line_total_cents=1700
            )
        ],
        currency="EUR",
        total_cents=1700,
    )


def placed_envelope(order_id: str = "ord-1") -> Envelope:
    return Envelope.wrap(order_placed(order_id), key=order_id, producer="checkout")


def test_wrap_to_bytes_from_bytes_round_trip() -> None:
    envelope = placed_envelope()
    again = Envelope.from_bytes(envelope.to_bytes())
    assert again == envelope
    assert again.decode() == order_placed()


def test_wrap_fills_the_envelope_from_the_message() -> None:
    envelope = placed_envelope("ord-7")
    assert (envelope.type, envelope.version) == ("OrderPlaced", 2)
    assert (envelope.key, envelope.correlation_id, envelope.producer) == (
        "ord-7",
        "ord-7",
        "checkout",
    )
    assert envelope.causation_id is None
    assert envelope.occurred_at.utcoffset() is not None
    assert envelope.payload == order_placed("ord-7").model_dump(mode="json")
    assert placed_envelope("ord-7").event_id != envelope.event_id


def test_headers_carry_type_version_correlation_and_event_id() -> None:
    envelope = placed_envelope("ord-9")
    assert dict(envelope.headers()) == {
        "event_id": str(envelope.event_id).encode(),
        "type": b"OrderPlaced",
        "version": b"2",
        "correlation_id": b"ord-9",
    }


def test_caused_by_carries_correlation_and_causation() -> None:
    cause = placed_envelope("ord-3")
    command = inventory_v1.ReserveStock(
        order_id="ord-3", lines=[inventory_v1.StockLine(sku="TEA-001", quantity=2)]
    )
    effect = Envelope.wrap(command, key="saga-3", producer="orchestrator", caused_by=cause)
    assert effect.correlation_id == cause.correlation_id == "ord-3"
    assert effect.causation_id == cause.event_id
    assert dict(effect.headers())["correlation_id"] == b"ord-3"

    explicit = Envelope.wrap(command, key="k", producer="p", caused_by=cause, correlation_id="c")
    assert (explicit.correlation_id, explicit.causation_id) == ("c", cause.event_id)


def test_wrap_takes_a_given_event_id_so_a_retry_is_the_same_message() -> None:
    event_id = deterministic_id("ord-4", "reserve-stock")
    first = Envelope.wrap(order_placed("ord-4"), key="ord-4", producer="p", event_id=event_id)
    again = Envelope.wrap(order_placed("ord-4"), key="ord-4", producer="p", event_id=event_id)
    assert first.event_id == again.event_id == event_id


def test_wrap_refuses_an_old_version() -> None:
    old = checkout_v1.OrderPlaced(
        order_id="ord-1",
        customer_id="cus-1",
        lines=[checkout_v1.OrderLine(sku="TEA-001", quantity=1, unit_price_cents=1)],
        total_cents=1,
    )
    with pytest.raises(ValueError, match="newest"):
        Envelope.wrap(old, key="ord-1", producer="checkout")


def test_an_old_version_on_the_wire_decodes_as_the_newest() -> None:
    current = placed_envelope().model_dump(mode="json")
    wire = {
        **current,
        "version": 1,
        "payload": {
            "order_id": "ord-1",
            "customer_id": "cus-1",
            "lines": [{"sku": "TEA-001", "quantity": 2, "unit_price_cents": 850}],
            "total_cents": 1700,
        },
    }
    assert Envelope.from_bytes(orjson.dumps(wire)).decode() == order_placed()


def test_deterministic_id_is_stable_and_distinguishes_its_parts() -> None:
    assert deterministic_id("saga-1", "reserve") == deterministic_id("saga-1", "reserve")
    assert deterministic_id("saga-1", "reserve") != deterministic_id("saga-1", "release")
    assert deterministic_id("saga-1", "reserve") != deterministic_id("saga-2", "reserve")
    assert deterministic_id("saga-1", "reserve").version == 5


def _without(field: str) -> bytes:
    record: dict[str, Any] = placed_envelope().model_dump(mode="json")
    del record[field]
    return orjson.dumps(record)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no value"),
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2, 3]", "not an envelope"),
        (b'"OrderPlaced"', "not an envelope"),
        (b"{}", "not an envelope"),
        (_without("event_id"), "event_id"),
        (_without("payload"), "payload"),
        (_without("type"), "type"),
    ],
)
def test_undecodable_records_are_invalid_envelopes(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEnvelopeError, match=reason):
        Envelope.from_bytes(value)


def test_a_malformed_field_is_an_invalid_envelope() -> None:
    record: dict[str, Any] = placed_envelope().model_dump(mode="json")
    for bad in ({"event_id": "not-a-uuid"}, {"version": 0}, {"key": ""}, {"payload": []}):
        with pytest.raises(InvalidEnvelopeError):
            Envelope.from_bytes(orjson.dumps({**record, **bad}))


def test_fields_a_newer_producer_added_are_tolerated_and_carried() -> None:
    # a producer a release ahead adds trace context; this (older) code must still read it
    newer = {
        **placed_envelope().model_dump(mode="json"),
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tenant": {"id": "t-1"},
    }
    envelope = Envelope.from_bytes(orjson.dumps(newer))
    assert envelope.decode() == order_placed()
    assert orjson.loads(envelope.to_bytes()) == newer  # re-serialised with them, not without
