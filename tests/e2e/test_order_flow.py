"""The whole system from outside: a customer over checkout's HTTP API, an operator reading the
orchestrator, inventory, the projection and the payment provider's knobs, the warehouse
announcing arrivals on `warehouse.events`, and the receipts mailbox. Every service, the read
side and the payment-provider simulator run as real processes on real Kafka and PostgreSQL.

One system serves the module; each test keeps to its own customers, orders and SKUs, and waits
for its sagas to end, so the tests do not see each other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.envelope import Envelope
from tests.conftest import Infra
from tests.support import eventually
from tests.support.outside import Outside, whole_system
from tests.support.system import PAY_TIMEOUT, bearer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def outside(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outside]:
    # compensations re-sent on the payment deadline's scale, not every 30 s
    tmp = tmp_path_factory.mktemp("order-flow")
    async with whole_system(infra, tmp, ORCHESTRATOR_COMPENSATE_TIMEOUT=str(PAY_TIMEOUT)) as made:
        yield made


def customer(kind: str = "") -> str:
    """A customer of this test alone; `decline…` and `silent…` steer the payment provider."""
    return f"{kind}{'-' if kind else 'cust-'}{uuid.uuid4().hex[:8]}"


def held(before: dict[str, int], after: dict[str, int], quantity: int) -> bool:
    """`quantity` more units reserved (no longer available), none gone from the shelf."""
    return after == {
        "on_hand": before["on_hand"],
        "reserved": before["reserved"] + quantity,
        "available": before["available"] - quantity,
    }


async def envelopes(outside: Outside, topic: str, order_id: str) -> list[Envelope]:
    return [
        e
        for e in (Envelope.from_bytes(r.value) for r in await outside.records(topic))
        if e.correlation_id == order_id
    ]


async def test_a_placed_order_is_confirmed_receipted_mailed_and_read_back_at_its_version(
    outside: Outside,
) -> None:
    alice = customer()
    lines = [{"sku": "TEA-001", "quantity": 2}, {"sku": "FILTER-100", "quantity": 3}]
    before = {line["sku"]: await outside.stock(line["sku"]) for line in lines}

    order_id = await outside.placed(alice, lines)
    saga = await outside.saga_ends(order_id)

    assert saga["status"] == "completed", saga
    order = await outside.order(alice, order_id)
    assert order["status"] == "confirmed"
    number = saga["receipt_number"]
    assert number
    mails = await eventually(lambda: outside.mails_about(order_id), bool, what="the receipt mailed")
    assert list(mails) == [f"{number}.eml"]
    assert mails[f"{number}.eml"]["To"].startswith(alice)
    # the read side, asked for the version checkout answered with, shows the confirmed order;
    # the receipt is another service's fact and follows on its own
    status, view = await outside.read_model(alice, order_id, order["version"])
    assert status == 200, view
    assert (view["status"], view["version"]) == ("confirmed", order["version"])
    _, view = await eventually(
        lambda: outside.read_model(alice, order_id, order["version"]),
        lambda found: found[1]["receipt"] is not None,
        what="the receipt in the read model",
    )
    assert view["receipt"]["number"] == number
    assert view["total_cents"] == order["total_cents"]
    for line in lines:
        after = await outside.stock(line["sku"])
        assert held(before[line["sku"]], after, line["quantity"]), (before, after)


async def test_an_order_beyond_the_stock_is_rejected_with_its_reason_and_holds_nothing(
    outside: Outside,
) -> None:
    bob = customer()
    before = await outside.stock("KETTLE-01")
    too_many = before["available"] + 1

    order_id = await outside.placed(bob, [{"sku": "KETTLE-01", "quantity": too_many}])
    saga = await outside.saga_ends(order_id)

    assert (saga["status"], saga["reason"]) == ("rejected", "insufficient stock for KETTLE-01")
    order = await outside.order(bob, order_id)
    assert (order["status"], order["reason"]) == ("rejected", "insufficient stock for KETTLE-01")
    assert await outside.stock("KETTLE-01") == before
    assert (await outside.payment(order_id)).get("status") is None  # never asked to pay
    assert outside.mails_about(order_id) == {}

    # once the warehouse delivers, the same order goes through
    await outside.receive_stock("KETTLE-01", 5)
    restocked = await eventually(
        lambda: outside.stock("KETTLE-01"),
        lambda s: s["on_hand"] == before["on_hand"] + 5,
        what="the arrival on the shelf",
    )
    assert restocked["available"] == before["available"] + 5
    again = await outside.placed(bob, [{"sku": "KETTLE-01", "quantity": too_many}])
    assert (await outside.saga_ends(again))["status"] == "completed"
    assert held(restocked, await outside.stock("KETTLE-01"), too_many)


async def test_a_declined_payment_rejects_the_order_and_releases_its_stock(
    outside: Outside,
) -> None:
    carol = customer("decline")
    before = await outside.stock("CUP-001")

    order_id = await outside.placed(carol, [{"sku": "CUP-001", "quantity": 2}])
    saga = await outside.saga_ends(order_id)

    assert saga["status"] == "rejected"
    assert saga["reason"].startswith("payment declined"), saga["reason"]
    order = await outside.order(carol, order_id)
    assert order["status"] == "rejected"
    assert order["reason"].startswith("payment declined"), order["reason"]
    assert (await outside.payment(order_id))["status"] == "declined"
    # it was reserved, then released
    types = [e.type for e in await envelopes(outside, "inventory.events", order_id)]
    assert [t for t in types if t != "StockLevelChanged"] == ["StockReserved", "StockReleased"]
    assert await outside.stock("CUP-001") == before
    assert outside.mails_about(order_id) == {}


async def test_a_payment_never_answered_passes_its_deadline_and_is_released_voided_and_rejected(
    outside: Outside,
) -> None:
    dave = customer("silent")
    before = await outside.stock("POT-001")

    order_id = await outside.placed(dave, [{"sku": "POT-001", "quantity": 1}])
    paying = await outside.saga_in(order_id, "paying")
    assert paying["deadline_at"] is not None
    saga = await outside.saga_ends(order_id, timeout=4 * PAY_TIMEOUT + 60)

    assert (saga["status"], saga["reason"]) == ("rejected", "payment timed out")
    assert "SagaDeadlinePassed" in [s["type"] for s in saga["steps"]]
    assert (await outside.order(dave, order_id))["status"] == "rejected"
    assert await outside.stock("POT-001") == before
    assert (await outside.payment(order_id))["status"] == "voided"


async def test_a_cancel_while_reserving_releases_whatever_gets_reserved_and_ends_cancelled(
    outside: Outside,
) -> None:
    erin = customer()
    before = await outside.stock("TEA-003")
    with outside.paused("inventory"):  # the ReserveStock waits on the topic meanwhile
        order_id = await outside.placed(erin, [{"sku": "TEA-003", "quantity": 3}])
        await outside.saga_in(order_id, "reserving")
        cancelled = await outside.cancel(erin, order_id)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        await outside.saga_in(order_id, "cancelling")

    saga = await outside.saga_ends(order_id)

    assert saga["status"] == "cancelled"
    assert await outside.stock("TEA-003") == before
    assert (await outside.payment(order_id)).get("status") is None  # payment never asked
    assert (await outside.order(erin, order_id))["status"] == "cancelled"


async def test_a_cancel_while_paying_releases_the_stock_voids_the_payment_and_ends_cancelled(
    outside: Outside,
) -> None:
    frank = customer("silent")
    before = await outside.stock("TEA-002")
    order_id = await outside.placed(frank, [{"sku": "TEA-002", "quantity": 1}])
    await outside.saga_in(order_id, "paying")  # the provider never answers this customer

    cancelled = await outside.cancel(frank, order_id)

    assert cancelled.status_code == 200, cancelled.text
    saga = await outside.saga_ends(order_id)
    assert saga["status"] == "cancelled"
    commands = [c for s in saga["steps"] for c in s["commands"]]
    assert commands[-2:] == ["ReleaseStock", "VoidPayment"]
    assert await outside.stock("TEA-002") == before
    assert (await outside.payment(order_id))["status"] == "voided"
    status, view = await outside.read_model(frank, order_id, cancelled.json()["version"])
    assert (status, view["status"]) == (200, "cancelled")


async def test_a_slow_payment_holds_the_saga_in_paying_until_a_cancel_voids_it_once_authorized(
    outside: Outside,
) -> None:
    """The provider authorizes, but only after the customer cancelled: the late authorization
    is undone (voided), never charged."""
    grace = customer()
    before = await outside.stock("TEA-002")
    async with outside.knobs_turned(latency_ms=int(PAY_TIMEOUT * 800)):  # under the deadline
        order_id = await outside.placed(grace, [{"sku": "TEA-002", "quantity": 2}])
        await outside.saga_in(order_id, "paying")
        cancelled = await outside.cancel(grace, order_id)
    assert cancelled.status_code == 200, cancelled.text

    saga = await outside.saga_ends(order_id)
    assert saga["status"] == "cancelled"
    await eventually(
        lambda: outside.payment(order_id),
        lambda p: p.get("status") == "voided",
        timeout=4 * PAY_TIMEOUT + 30,
        what="the late authorization voided",
    )
    assert await outside.stock("TEA-002") == before
    assert (await outside.order(grace, order_id))["status"] == "cancelled"


async def test_a_compensation_answer_lost_in_transit_is_asked_for_again_and_the_saga_ends(
    outside: Outside,
) -> None:
    """The provider queues its PaymentVoided, then loses it: the saga's re-sent VoidPayment
    (on the compensation deadline) must be answered again, not dropped as a duplicate."""
    heidi = customer("silent")
    before = await outside.stock("TEA-002")
    order_id = await outside.placed(heidi, [{"sku": "TEA-002", "quantity": 1}])
    await outside.saga_in(order_id, "paying")
    async with outside.knobs_turned(latency_ms=600_000):  # the answer waits, to be lost
        assert (await outside.cancel(heidi, order_id)).status_code == 200
        await eventually(
            lambda: outside.payment(order_id),
            lambda p: any(a["type"] == "PaymentVoided" for a in p.get("answers", [])),
            timeout=60,
            what="the void answered (queued)",
        )
    assert await outside.lose_queued_answers(order_id) >= 1

    saga = await outside.saga_ends(order_id, timeout=6 * PAY_TIMEOUT + 30)

    assert saga["status"] == "cancelled"
    commands = [c for s in saga["steps"] for c in s["commands"]]
    assert commands.count("VoidPayment") >= 2  # sent, then re-sent on the deadline
    sent = [a for a in (await outside.payment(order_id))["answers"] if a["sent_at"]]
    assert len(sent) >= 2  # the lost one and at least one answer to a re-send
    assert await outside.stock("TEA-002") == before


async def test_a_confirmed_order_cannot_be_cancelled_and_a_cancelled_one_cancels_again_unchanged(
    outside: Outside,
) -> None:
    heidi = customer()
    confirmed = await outside.placed(heidi, [{"sku": "TEA-001", "quantity": 1}])
    assert (await outside.saga_ends(confirmed))["status"] == "completed"
    stock = await outside.stock("TEA-001")

    refused = await outside.cancel(heidi, confirmed)

    assert refused.status_code == 409, refused.text
    assert "cannot cancel" in refused.json()["detail"]
    assert (await outside.order(heidi, confirmed))["status"] == "confirmed"
    assert (await outside.saga(confirmed))["status"] == "completed"
    assert await outside.stock("TEA-001") == stock

    # a rejected order is as final
    rejected = await outside.placed(
        heidi,
        [{"sku": "KETTLE-01", "quantity": (await outside.stock("KETTLE-01"))["available"] + 1}],
    )
    assert (await outside.saga_ends(rejected))["status"] == "rejected"
    assert (await outside.cancel(heidi, rejected)).status_code == 409

    # cancelling twice answers the cancelled order, unchanged
    ivan = customer("silent")
    order_id = await outside.placed(ivan, [{"sku": "TEA-003", "quantity": 1}])
    await outside.saga_in(order_id, "paying")
    first = await outside.cancel(ivan, order_id)
    assert first.status_code == 200, first.text
    second = await outside.cancel(ivan, order_id)
    assert second.status_code == 200, second.text
    assert second.json() == first.json()
    assert (await outside.saga_ends(order_id))["status"] == "cancelled"
    # someone else's order is not theirs to cancel, nor to see
    assert (await outside.cancel(heidi, order_id)).status_code == 404


async def test_retried_posts_with_one_idempotency_key_place_one_order_with_one_saga(
    outside: Outside,
) -> None:
    judy = customer()
    key = uuid.uuid4().hex
    lines = [{"sku": "FILTER-100", "quantity": 4}]
    before = await outside.stock("FILTER-100")

    # a client that timed out sends again, and again, without waiting
    answers = await asyncio.gather(*(outside.place(judy, lines, key=key) for _ in range(3)))
    answers += [await outside.place(judy, lines, key=key)]

    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    order_ids = {a.json()["order_id"] for a in answers}
    assert len(order_ids) == 1, order_ids
    [order_id] = order_ids
    replayed = [a.headers.get("Idempotent-Replayed") for a in answers]
    assert (replayed.count(None), replayed.count("true")) == (1, 3), (
        replayed
    )  # the first, then replays
    assert (await outside.saga_ends(order_id))["status"] == "completed"

    # one order, one saga, one reservation
    placed = [
        e
        for e in (Envelope.from_bytes(r.value) for r in await outside.records("checkout.events"))
        if e.type == "OrderPlaced" and e.payload["customer_id"] == judy
    ]
    assert [e.key for e in placed] == [order_id]
    history = await outside.http.get(
        outside.url("projection", "/customers/me/orders"), headers=bearer(judy)
    )
    assert [o["order_id"] for o in history.json()["orders"]] == [order_id]
    reservations = await envelopes(outside, "inventory.commands", order_id)
    assert [e.type for e in reservations] == ["ReserveStock"]
    reserved = [e for e in await envelopes(outside, "inventory.events", order_id)]
    assert [e.type for e in reserved if e.type != "StockLevelChanged"] == ["StockReserved"]
    assert held(before, await outside.stock("FILTER-100"), 4)

    # the same key with another body is refused, and places nothing
    other: Any = await outside.place(judy, [{"sku": "FILTER-100", "quantity": 5}], key=key)
    assert other.status_code == 422, other.text
    [problem] = other.json()["detail"]
    assert (problem["type"], problem["loc"]) == (
        "idempotency_key_reused",
        ["header", "Idempotency-Key"],
    )
    assert held(before, await outside.stock("FILTER-100"), 4)
    # another customer's key is theirs alone
    mallory = customer()
    theirs = await outside.place(mallory, lines, key=key)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["order_id"] != order_id
    assert (await outside.saga_ends(theirs.json()["order_id"]))["status"] == "completed"
