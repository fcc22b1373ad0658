"""Checkout's use cases against the in-memory twins of the event store, outbox and tables."""

from __future__ import annotations

import uuid
from types import TracebackType

import pytest

from schemas.checkout.v1 import ConfirmOrder, RejectOrder
from services.checkout.domain import OrderRuleViolation, OrderStatus, UnknownSkuError
from services.checkout.handlers import (
    CancelOrder,
    GetOrder,
    IdempotencyKeyReused,
    OrderHandlers,
    OrderNotFound,
    PlaceOrder,
    confirm_order,
    reject_order,
)
from services.checkout.memory import MemoryCheckoutDatabase, MemoryCheckoutUnitOfWork
from services.checkout.models import PlaceOrderRequest
from shared.envelope import Envelope, deterministic_id
from shared.errors import PermanentError
from shared.ports import NewEvent

TOPIC = "checkout.events"


def body(*lines: tuple[str, int]) -> PlaceOrderRequest:
    return PlaceOrderRequest.model_validate(
        {"lines": [{"sku": sku, "quantity": q} for sku, q in lines]}
    )


@pytest.fixture
def db() -> MemoryCheckoutDatabase:
    return MemoryCheckoutDatabase()


@pytest.fixture
def handlers(db: MemoryCheckoutDatabase) -> OrderHandlers:
    return OrderHandlers(lambda: MemoryCheckoutUnitOfWork(db), events_topic=TOPIC)


def command_envelope(message: ConfirmOrder | RejectOrder) -> Envelope:
    return Envelope.wrap(message, key=message.order_id, producer="orchestrator")


async def run_command(db: MemoryCheckoutDatabase, message: ConfirmOrder | RejectOrder) -> None:
    async with MemoryCheckoutUnitOfWork(db) as uow:
        if isinstance(message, ConfirmOrder):
            await confirm_order(command_envelope(message), message, uow, events_topic=TOPIC)
        else:
            await reject_order(command_envelope(message), message, uow, events_topic=TOPIC)


async def test_placing_stores_the_event_and_its_outbox_row_together(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    placed = await handlers.place(PlaceOrder("alice", body(("TEA-001", 2))))
    order_id = placed.order.order_id
    [stored] = db.streams[order_id]
    [(topic, envelope)] = db.outbox
    assert (topic, envelope.key, envelope.correlation_id) == (TOPIC, order_id, order_id)
    assert (envelope.type, envelope.version, envelope.producer) == ("OrderPlaced", 2, "checkout")
    assert envelope.event_id == stored.event_id
    assert placed.order.total_cents == 1700
    assert placed.order.version == 1
    # the read side's consistency token: the version the ETag names, on the event itself
    assert envelope.stream_version == stored.stream_version == 1


async def test_a_retry_with_the_same_key_returns_the_first_answer(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    first = await handlers.place(PlaceOrder("alice", body(("TEA-001", 1)), "key-1"))
    again = await handlers.place(PlaceOrder("alice", body(("TEA-001", 1)), "key-1"))
    assert again.order == first.order
    assert (first.replayed, again.replayed) == (False, True)
    assert len(db.streams) == 1
    assert len(db.outbox) == 1


async def test_the_same_key_with_another_body_is_refused(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    await handlers.place(PlaceOrder("alice", body(("TEA-001", 1)), "key-1"))
    with pytest.raises(IdempotencyKeyReused, match="different request body"):
        await handlers.place(PlaceOrder("alice", body(("TEA-001", 2)), "key-1"))
    assert len(db.outbox) == 1


async def test_keys_are_scoped_per_customer(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    a = await handlers.place(PlaceOrder("alice", body(("TEA-001", 1)), "key-1"))
    b = await handlers.place(PlaceOrder("bob", body(("TEA-001", 1)), "key-1"))
    assert a.order.order_id != b.order.order_id
    assert not b.replayed


async def test_an_unknown_sku_writes_nothing(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    with pytest.raises(UnknownSkuError, match="NOPE-1"):
        await handlers.place(PlaceOrder("alice", body(("TEA-001", 1), ("NOPE-1", 1)), "key-1"))
    assert (db.streams, db.outbox, db.idempotency) == ({}, [], {})


async def test_only_the_customer_or_an_admin_sees_an_order(handlers: OrderHandlers) -> None:
    placed = await handlers.place(PlaceOrder("alice", body(("TEA-001", 1))))
    order_id = placed.order.order_id
    assert (await handlers.get(GetOrder(order_id, "alice"))).customer_id == "alice"
    with pytest.raises(OrderNotFound):
        await handlers.get(GetOrder(order_id, "bob"))
    assert (await handlers.get(GetOrder(order_id, "root", any_customer=True))).version == 1
    with pytest.raises(OrderNotFound):
        await handlers.cancel(CancelOrder(order_id, "bob", "not mine"))


async def test_confirm_command_records_order_confirmed_caused_by_it(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    order_id = (await handlers.place(PlaceOrder("alice", body(("TEA-001", 1))))).order.order_id
    command = ConfirmOrder(order_id=order_id)
    envelope = command_envelope(command)
    async with MemoryCheckoutUnitOfWork(db) as uow:
        await confirm_order(envelope, command, uow, events_topic=TOPIC)
    _, confirmed = db.outbox[-1]
    assert (confirmed.type, confirmed.causation_id) == ("OrderConfirmed", envelope.event_id)
    view = await handlers.get(GetOrder(order_id, "alice"))
    assert view.status is OrderStatus.CONFIRMED
    assert confirmed.stream_version == view.version == 2


async def test_a_command_for_a_missing_order_fails_permanently(
    db: MemoryCheckoutDatabase,
) -> None:
    with pytest.raises(PermanentError, match="not found"):
        await run_command(db, RejectOrder(order_id=str(uuid.uuid4()), reason="no stock"))
    assert (db.streams, db.outbox) == ({}, [])


async def finish(handlers: OrderHandlers, db: MemoryCheckoutDatabase, how: str) -> str:
    """A placed order, then cancelled by its customer or confirmed or rejected by the saga."""
    order_id = (await handlers.place(PlaceOrder("alice", body(("TEA-001", 1))))).order.order_id
    if how == "cancelled":
        await handlers.cancel(CancelOrder(order_id, "alice", "changed my mind"))
    else:
        await run_command(db, saga_command(how, order_id))
    return order_id


def saga_command(outcome: str, order_id: str) -> ConfirmOrder | RejectOrder:
    if outcome == "confirmed":
        return ConfirmOrder(order_id=order_id)
    return RejectOrder(order_id=order_id, reason="payment declined")


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        ("cancelled", "confirmed"),  # the saga's ConfirmOrder lost the race to the customer
        ("rejected", "confirmed"),
        ("cancelled", "rejected"),
        ("confirmed", "rejected"),
    ],
)
async def test_a_command_the_orders_state_forbids_is_answered_with_a_refusal(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers, status: str, refused: str
) -> None:
    order_id = await finish(handlers, db, status)
    before = list(db.streams[order_id])
    command = saga_command(refused, order_id)
    await run_command(db, command)
    await run_command(db, command)  # repeated under a new event id
    *_, (topic, first), (_, again) = db.outbox
    assert (topic, first.type, first.key, first.correlation_id) == (
        TOPIC,
        "OrderCommandRefused",
        order_id,
        order_id,
    )
    assert first.payload == {
        "order_id": order_id,
        "command": command.TYPE,
        "status": status,
        "reason": f"cannot {refused.removesuffix('ed')} order {order_id}: it is {status}",
    }
    assert (
        first.event_id
        == again.event_id
        == deterministic_id("checkout", order_id, command.TYPE, "refused")
    )
    assert (again.type, again.payload) == (first.type, first.payload)
    # a reply, not a change: the stream, and with it the version the read side waits on, stays
    assert db.streams[order_id] == before
    view = await handlers.get(GetOrder(order_id, "alice"))
    assert (view.status, view.version) == (status, len(before))


async def test_each_command_type_is_refused_under_its_own_id(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    order_id = await finish(handlers, db, "cancelled")
    await run_command(db, ConfirmOrder(order_id=order_id))
    await run_command(db, RejectOrder(order_id=order_id, reason="no stock"))
    *_, (_, confirm), (_, reject) = db.outbox
    assert confirm.event_id != reject.event_id


@pytest.mark.parametrize("outcome", ["confirmed", "rejected"])
async def test_a_repeated_command_re_publishes_its_first_outcome_as_it_was(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers, outcome: str
) -> None:
    order_id = await finish(handlers, db, outcome)
    stream = list(db.streams[order_id])
    _, first = db.outbox[-1]
    await run_command(db, saga_command(outcome, order_id))  # same order, new event id
    _, again = db.outbox[-1]
    assert len(db.outbox) == 3
    assert again.type == f"Order{outcome.capitalize()}"
    assert again.event_id == first.event_id == stream[-1].event_id
    assert again.stream_version == first.stream_version == stream[-1].stream_version
    assert again.to_bytes() == first.to_bytes()  # the causation too: the first command's
    assert db.streams[order_id] == stream


async def test_an_outcome_stored_without_its_envelope_context_is_re_published_by_id(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    """Events stored before their envelope's context was: same id, type, key and payload."""
    order_id = (await handlers.place(PlaceOrder("alice", body(("TEA-001", 1))))).order.order_id
    stored = uuid.uuid4()
    async with MemoryCheckoutUnitOfWork(db) as uow:
        rejected = NewEvent(stored, "OrderRejected", 1, {"reason": "old", "order_id": order_id})
        await uow.events.append(order_id, 1, [rejected])
    await run_command(db, RejectOrder(order_id=order_id, reason="again"))
    [_, (_, again)] = db.outbox
    assert (again.event_id, again.type, again.key, again.correlation_id) == (
        stored,
        "OrderRejected",
        order_id,
        order_id,
    )
    assert again.payload == {"order_id": order_id, "reason": "old"}
    assert list(again.payload) == ["order_id", "reason"]  # the model's order, as first sent
    assert again.occurred_at == db.streams[order_id][-1].recorded_at


async def test_a_cancel_that_loses_the_race_reloads_and_is_refused(
    db: MemoryCheckoutDatabase,
) -> None:
    """The confirmation commits between the cancel's load and its commit: the cancel's append
    conflicts, it reloads, finds the order confirmed and is refused."""

    class ConfirmedMeanwhile(MemoryCheckoutUnitOfWork):
        async def __aexit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            await run_command(db, ConfirmOrder(order_id=order_id))
            await super().__aexit__(exc_type, exc, tb)

    plain = OrderHandlers(lambda: MemoryCheckoutUnitOfWork(db), events_topic=TOPIC)
    order_id = (await plain.place(PlaceOrder("alice", body(("TEA-001", 1))))).order.order_id
    factories = iter([ConfirmedMeanwhile(db), MemoryCheckoutUnitOfWork(db)])
    racing = OrderHandlers(lambda: next(factories), events_topic=TOPIC)
    with pytest.raises(OrderRuleViolation, match="it is confirmed"):
        await racing.cancel(CancelOrder(order_id, "alice", "too late"))
    assert [e.type for e in db.streams[order_id]] == ["OrderPlaced", "OrderConfirmed"]
