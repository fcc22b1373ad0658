"""Replies the saga can rely on (DESIGN §2), on real Kafka and PostgreSQL: every command gets
exactly one outcome event, also when repeated, when there was nothing to do, or when the order's
state forbids it — never silence, never a dead letter."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from schemas.checkout.v1 import ConfirmOrder, RejectOrder
from schemas.inventory.v1 import ReleaseStock, ReserveStock, StockLine
from services.inventory import bootstrap
from shared.envelope import Envelope, deterministic_id
from shared.kafka.dead_letters import list_dead_letters
from shared.ports import NewEvent
from shared.postgres.eventstore import PostgresEventStore
from tests.integration import test_checkout_api, test_inventory_consumer
from tests.integration.test_checkout_api import (
    Checkout,
    bearer,
    commands_consumed,
    published,
    send_command,
)
from tests.integration.test_inventory_consumer import _events, _level
from tests.support import eventually, unique
from tests.support.processes import produce

pytestmark = pytest.mark.integration
# the services under test, as their own tests run them
settings = test_checkout_api.settings
checkout = test_checkout_api.checkout
inventory = test_inventory_consumer.inventory

RELEASED = "the order's reservation was released"
# sessions waiting for this session's transaction to end (pg_locks spans every database)
WAITING_ON_ME = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'transactionid' AND NOT granted AND transactionid = (
    SELECT transactionid FROM pg_locks
    WHERE pid = pg_backend_pid() AND locktype = 'transactionid' AND granted)
"""


# --- inventory -----------------------------------------------------------------------------


def _reserve(order: str, quantity: int = 3) -> Envelope:
    command = ReserveStock(order_id=order, lines=[StockLine(sku="TEA-001", quantity=quantity)])
    return Envelope.wrap(command, key=order, producer="saga")


def _release(order: str) -> Envelope:
    return Envelope.wrap(
        ReleaseStock(order_id=order, reason="cancelled"), key=order, producer="saga"
    )


async def test_a_release_before_the_reservation_answers_and_the_late_reserve_takes_nothing(
    inventory: bootstrap.Running, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    order = unique("order")
    commands = catalogue_prefix + "inventory.commands"
    # the saga compensated (customer cancelled) while its ReserveStock was still on the way
    await produce(kafka_bootstrap, commands, [_release(order), _release(order), _reserve(order)])

    kafka = (kafka_bootstrap, catalogue_prefix)
    released = await eventually(
        lambda: _events(*kafka, "StockReleased", order),
        lambda found: len(found) == 2,
        what="the release and its repeat answered",
    )
    [late] = await eventually(
        lambda: _events(*kafka, "StockReservationFailed", order),
        lambda found: len(found) == 1,
        what="the late reservation answered",
    )
    assert {r.event_id for r in released} == {deterministic_id("inventory", f"released:{order}")}
    assert released[0].payload == {"order_id": order, "lines": []}
    assert late.payload == {"order_id": order, "reason": RELEASED, "shortages": []}
    assert await _events(*kafka, "StockReserved", order) == []
    assert await _level(inventory.pool, "TEA-001") == (10, 0)
    row = await inventory.pool.fetchrow(
        "SELECT status, released_at FROM reservations WHERE order_id = $1", order
    )
    assert row is not None
    assert (row["status"], row["released_at"] is not None) == ("released", True)
    assert await inventory.pool.fetchval("SELECT count(*) FROM reservation_lines") == 0
    assert await list_dead_letters(kafka_bootstrap, commands + ".dlq") == []


async def test_a_reserve_repeated_after_the_release_fails_under_an_id_of_its_own(
    inventory: bootstrap.Running, kafka_bootstrap: str, catalogue_prefix: str
) -> None:
    order, short = unique("order"), unique("order")
    commands = catalogue_prefix + "inventory.commands"
    kafka = (kafka_bootstrap, catalogue_prefix)
    await produce(kafka_bootstrap, commands, [_reserve(order), _reserve(short, quantity=11)])
    [reserved] = await eventually(
        lambda: _events(*kafka, "StockReserved", order), bool, what="reserved"
    )
    [failed] = await eventually(
        lambda: _events(*kafka, "StockReservationFailed", short), bool, what="failed"
    )
    await produce(
        kafka_bootstrap,
        commands,
        [_release(order), _reserve(order), _release(short), _reserve(short, quantity=11)],
    )

    [late] = await eventually(
        lambda: _events(*kafka, "StockReservationFailed", order), bool, what="late reserve"
    )
    assert late.payload == {"order_id": order, "reason": RELEASED, "shortages": []}
    # one id names one message: a reused one would be dead-lettered downstream as a collision
    assert late.event_id not in {reserved.event_id, failed.event_id}
    # a failed reservation held nothing: its release says so, and its repeat fails as before
    [nothing] = await eventually(
        lambda: _events(*kafka, "StockReleased", short), bool, what="failed one released"
    )
    assert nothing.payload == {"order_id": short, "lines": []}
    again = await eventually(
        lambda: _events(*kafka, "StockReservationFailed", short),
        lambda found: len(found) == 2,
        what="the failed reservation's repeat answered",
    )
    assert {a.event_id for a in again} == {failed.event_id}
    assert await _level(inventory.pool, "TEA-001") == (10, 0)
    statuses = await inventory.pool.fetch("SELECT order_id, status FROM reservations")
    assert {(r["order_id"], r["status"]) for r in statuses} == {
        (order, "released"),
        (short, "failed"),
    }


# --- checkout ------------------------------------------------------------------------------


async def _records(checkout: Checkout, order_id: str) -> list[Envelope]:
    await eventually(lambda: commands_consumed(checkout), bool, what="commands consumed")
    return [Envelope.from_bytes(r.value) for r in await published(checkout, order_id)]


async def _dead_letters(checkout: Checkout) -> list[object]:
    topic = checkout.topic("checkout.commands") + ".dlq"
    return list(await list_dead_letters(checkout.bootstrap, topic))


async def test_a_confirm_after_the_customers_cancel_is_refused_in_a_reply(
    checkout: Checkout,
) -> None:
    order_id = (await checkout.place("alice"))["order_id"]
    cancel = await checkout.client.post(f"/orders/{order_id}/cancel", headers=bearer("alice"))
    assert cancel.status_code == 200, cancel.text
    confirm = ConfirmOrder(order_id=order_id)
    for _ in range(2):  # repeated under a new event id
        await send_command(checkout, Envelope.wrap(confirm, key=order_id, producer="saga"))

    *_, refused, again = await _records(checkout, order_id)
    assert (refused.type, refused.key, refused.correlation_id) == (
        "OrderCommandRefused",
        order_id,
        order_id,
    )
    assert refused.payload == {
        "order_id": order_id,
        "command": "ConfirmOrder",
        "status": "cancelled",
        "reason": f"cannot confirm order {order_id}: it is cancelled",
    }
    assert refused.event_id == again.event_id
    assert await _dead_letters(checkout) == []
    # the order did not change: no event, no new version for the read side to wait on
    assert await checkout.stream(order_id) == ["OrderPlaced", "OrderCancelled"]
    view = await checkout.client.get(f"/orders/{order_id}", headers=bearer("alice"))
    assert (view.json()["status"], view.headers["ETag"]) == ("cancelled", '"2"')


async def test_a_confirm_that_loses_the_race_to_the_cancel_is_refused_in_a_reply(
    checkout: Checkout,
) -> None:
    """The cancel is appended, uncommitted, before the confirmation loads the order; the
    confirmation then waits at its own append on that row, conflicts once it commits, and is
    retried against the cancelled order."""
    order_id = (await checkout.place("alice"))["order_id"]
    command = Envelope.wrap(ConfirmOrder(order_id=order_id), key=order_id, producer="saga")
    gate = await asyncpg.connect(checkout.dsn)
    try:
        async with gate.transaction():
            cancelled = {"order_id": order_id, "reason": "changed my mind"}
            await PostgresEventStore(gate).append(
                order_id, 1, [NewEvent(uuid.uuid4(), "OrderCancelled", 1, cancelled)]
            )
            await send_command(checkout, command)
            await eventually(
                lambda: gate.fetchval(WAITING_ON_ME), bool, what="the confirmation waiting"
            )
    finally:
        await gate.close()

    *_, reply = await _records(checkout, order_id)
    assert (reply.type, reply.payload["status"], reply.causation_id) == (
        "OrderCommandRefused",
        "cancelled",
        command.event_id,
    )
    assert await _dead_letters(checkout) == []
    assert await checkout.stream(order_id) == ["OrderPlaced", "OrderCancelled"]


@pytest.mark.parametrize("outcome", ["OrderConfirmed", "OrderRejected"])
async def test_a_repeated_command_gets_its_first_outcome_again_byte_for_byte(
    checkout: Checkout, outcome: str
) -> None:
    order_id = (await checkout.place("alice"))["order_id"]
    command = (
        ConfirmOrder(order_id=order_id)
        if outcome == "OrderConfirmed"
        else RejectOrder(order_id=order_id, reason="payment declined")
    )
    first = Envelope.wrap(command, key=order_id, producer="saga")
    await send_command(checkout, first)
    await eventually(lambda: checkout.stream(order_id), lambda s: len(s) == 2, what="applied")
    await send_command(checkout, Envelope.wrap(command, key=order_id, producer="saga"))

    await eventually(lambda: commands_consumed(checkout), bool, what="commands consumed")
    *_, original, repeat = await published(checkout, order_id)
    # the same record (id, causation, time, payload as first sent, though jsonb reorders keys)
    assert repeat.value == original.value
    assert repeat.key == original.key
    assert dict(repeat.headers) == dict(original.headers)
    sent = Envelope.from_bytes(repeat.value)
    assert (sent.type, sent.causation_id) == (outcome, first.event_id)
    assert await checkout.stream(order_id) == ["OrderPlaced", outcome]
