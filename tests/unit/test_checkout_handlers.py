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
from shared.envelope import Envelope
from shared.errors import PermanentError

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
    assert (await handlers.get(GetOrder(order_id, "alice"))).status is OrderStatus.CONFIRMED


async def test_commands_against_a_finished_or_missing_order_fail_permanently(
    db: MemoryCheckoutDatabase, handlers: OrderHandlers
) -> None:
    order_id = (await handlers.place(PlaceOrder("alice", body(("TEA-001", 1))))).order.order_id
    await handlers.cancel(CancelOrder(order_id, "alice", "changed my mind"))
    with pytest.raises(PermanentError, match="cannot confirm"):
        await run_command(db, ConfirmOrder(order_id=order_id))
    with pytest.raises(PermanentError, match="not found"):
        await run_command(db, RejectOrder(order_id=str(uuid.uuid4()), reason="no stock"))
    assert [e.type for e in db.streams[order_id]] == ["OrderPlaced", "OrderCancelled"]


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
