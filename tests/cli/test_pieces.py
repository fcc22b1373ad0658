"""The CLI's pure parts, no I/O: the causation forest of a trace in the cases a healthy order
does not show (a message found twice, a dead letter, a cause never found), the time filters
and dead-letter ids an operator types, and what may be printed of a database URL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.cli.dlq import parse_id, when
from services.cli.errors import CliError, redact
from services.cli.events import Seen
from services.cli.trace import forest
from shared.envelope import Envelope

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def message(type_: str, after: float, cause: Envelope | None = None) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        type=type_,
        version=1,
        occurred_at=T0 + timedelta(seconds=after),
        producer="test",
        key="o-1",
        correlation_id="o-1",
        causation_id=None if cause is None else cause.event_id,
        payload={},
    )


def seen(envelope: Envelope, topic: str, offset: int = 0, **headers: str) -> Seen:
    return Seen(topic, 0, offset, T0, "o-1", headers, envelope, None, envelope.to_bytes())


def test_a_trace_hangs_each_message_under_its_cause_in_time_order() -> None:
    placed = message("OrderPlaced", 0)
    reserve = message("ReserveStock", 0.1, placed)
    reserved = message("StockReserved", 0.3, reserve)
    level = message("StockLevelChanged", 0.2, reserve)

    [root] = forest(
        [seen(e, "t") for e in (reserved, level, reserve, placed)]  # as read: any order
    )

    assert root.seen.envelope == placed
    [child] = root.children
    assert child.seen.envelope == reserve
    assert [c.seen.envelope for c in child.children] == [level, reserved]


def test_copies_count_once_dead_letters_hang_on_their_message_and_lost_causes_are_roots() -> None:
    placed = message("OrderPlaced", 0)
    reserve = message("ReserveStock", 0.1, placed)
    stray = message("StockReleased", 5, message("ReleaseStock", 4))  # its cause was not found

    roots = forest(
        [
            seen(placed, "checkout.events"),
            seen(reserve, "inventory.commands", 0),
            seen(reserve, "inventory.commands", 7),  # re-sent after a crash, same id
            seen(
                reserve,
                "inventory.commands.dlq",
                **{"dlq.consumer": "inventory", "dlq.reason": "rejected", "dlq.error": "no"},
            ),
            seen(stray, "inventory.events"),
        ]
    )

    assert [r.seen.envelope for r in roots] == [placed, stray]
    [node] = roots[0].children
    assert (node.seen.offset, node.copies) == (0, 2)
    assert [(d.consumer, d.reason) for d in node.dead_letters] == [("inventory", "rejected")]


def test_times_are_iso_or_a_span_back_from_now() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert when("90m", now) == now - timedelta(minutes=90)
    assert when("2d", now) == now - timedelta(days=2)
    assert when("2026-12-01T10:00:00") == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert when("2026-12-01T10:00:00+01:00") == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither an ISO 8601 time nor a span"):
        when("yesterday")


def test_a_dead_letter_id_names_a_dead_letter_topic_partition_and_offset() -> None:
    assert parse_id("t1.checkout.events.dlq:0:42") == ("t1.checkout.events.dlq", 0, 42)
    for wrong in ("checkout.events:0:1", "checkout.events.dlq:0", "checkout.events.dlq:a:1"):
        with pytest.raises(CliError, match="is not a dead letter id") as caught:
            parse_id(wrong)
        assert caught.value.status == 2


def test_a_database_url_is_printed_without_its_password() -> None:
    assert redact("postgresql://leadline:s3cr:et@db:5433/checkout") == (
        "postgresql://leadline:***@db:5433/checkout"
    )
    assert redact("postgresql://db/checkout") == "postgresql://db/checkout"
