"""Checkout's use cases. HTTP ones open their own unit of work (from the injected factory);
the Kafka command handlers run inside the consumer runner's, which holds the inbox row."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.checkout.v1 import (
    ConfirmOrder,
    OrderCommandRefused,
    OrderConfirmed,
    OrderRejected,
    RefusableCommand,
    RejectOrder,
)
from schemas.registry import REGISTRY, Message
from services.checkout.domain import Order, OrderRuleViolation, price
from services.checkout.models import OrderView, PlaceOrderRequest
from services.checkout.ports import CheckoutUnitOfWork, OrderUnitOfWork
from shared.buses import Command, Query
from shared.envelope import Envelope, deterministic_id
from shared.errors import PermanentError
from shared.observability.logging import get_logger
from shared.ports import ConcurrencyError, RecordedEvent
from shared.repository import EventSourcedRepository, NotFound

PRODUCER = "checkout"
log = get_logger(__name__)


class OrderNotFound(LookupError):
    """No such order, or not one the caller may see (the two are indistinguishable)."""


class NotOrderOwner(PermissionError):
    """An admin may read any order, but only its customer may change it."""


class IdempotencyKeyReused(ValueError):
    """The key was first used for a different request body."""


@dataclass(frozen=True)
class PlaceOrder(Command["Placed"]):
    customer_id: str
    request: PlaceOrderRequest
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Placed:
    order: OrderView
    replayed: bool  # the first answer under this idempotency key, nothing written now


@dataclass(frozen=True)
class CancelOrder(Command[OrderView]):
    order_id: str
    customer_id: str
    reason: str
    any_customer: bool = False  # admin scope: may see the order, still may not cancel it


@dataclass(frozen=True)
class GetOrder(Query[OrderView]):
    order_id: str
    customer_id: str
    any_customer: bool = False  # admin scope


def fingerprint(request: PlaceOrderRequest) -> str:
    canonical = orjson.dumps(request.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


async def save(
    uow: OrderUnitOfWork, order: Order, *, events_topic: str, caused_by: Envelope | None = None
) -> int:
    """Append the order's pending events and, in the same transaction, their outbox rows; the
    envelope's event id is the stored event's id, so consumers can relate the two."""
    pending = list(order.pending)
    ids = [uuid.uuid4() for _ in pending]
    # What the envelopes say beyond the events goes into the stream with them, so that a
    # stored event can be published again as the very same record (`republish`).
    context = {
        "occurred_at": datetime.now(UTC).isoformat(),
        "causation_id": str(caused_by.event_id) if caused_by else None,
    }
    version = await EventSourcedRepository(Order, uow.events).save(
        order, event_ids=ids, metadata=context
    )
    first = version - len(pending) + 1
    for n, (event, event_id) in enumerate(zip(pending, ids, strict=True)):
        type_, schema_version, payload = REGISTRY.encode(event)
        envelope = _envelope(
            order.id, event_id, type_, schema_version, payload, context, stream_version=first + n
        )
        await uow.outbox.append(events_topic, envelope)
    return version


async def republish(
    uow: OrderUnitOfWork, order_id: str, event: type[Message], *, events_topic: str
) -> None:
    """Publish the order's latest stored `event` again, as first published: same id, type,
    key and (for events saved with their context) bytes. Downstream inboxes drop it as the
    duplicate it is; the saga, which asked again, sees its reply. Nothing is appended."""
    stored = await uow.events.load(order_id)
    found = next(e for e in reversed(stored) if e.type == event.TYPE)
    await uow.outbox.append(events_topic, _stored_envelope(order_id, found))


def _stored_envelope(order_id: str, event: RecordedEvent) -> Envelope:
    # events saved before their context was stored: the same id, type and key, a close time
    context = {"occurred_at": event.recorded_at, "causation_id": None, **event.metadata}
    return _envelope(
        order_id,
        event.event_id,
        event.type,
        event.version,
        event.payload,
        context,
        stream_version=event.stream_version,
    )


def _envelope(
    order_id: str,
    event_id: uuid.UUID,
    type_: str,
    version: int,
    payload: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    stream_version: int,
) -> Envelope:
    """One way to build an order event's record, first publication and re-publication alike.
    The payload goes through its model: jsonb does not keep the order of keys, the model
    does (and re-publishes an old version as that version, which consumers upcast)."""
    model = REGISTRY.model(type_, version)
    return Envelope(
        event_id=event_id,
        type=type_,
        version=version,
        occurred_at=context["occurred_at"],
        producer=PRODUCER,
        key=order_id,
        correlation_id=order_id,
        causation_id=context["causation_id"],
        stream_version=stream_version,
        payload=model.model_validate(payload).model_dump(mode="json"),
    )


async def load(uow: OrderUnitOfWork, order_id: str) -> Order:
    try:
        return await EventSourcedRepository(Order, uow.events).load(order_id)
    except NotFound:
        raise OrderNotFound(f"order {order_id} not found") from None


class OrderHandlers:
    def __init__(
        self,
        uow_factory: Callable[[], CheckoutUnitOfWork],
        *,
        events_topic: str,
        attempts: int = 3,
    ) -> None:
        self._uow = uow_factory
        self._topic = events_topic
        self._attempts = attempts

    async def place(self, command: PlaceOrder) -> Placed:
        key, print_ = command.idempotency_key, fingerprint(command.request)
        async with self._uow() as uow:
            order_id = str(uuid.uuid4())
            if key is not None:
                first = await uow.idempotency.claim(command.customer_id, key, print_, order_id)
                if first is not None:
                    if first.fingerprint != print_:
                        raise IdempotencyKeyReused(
                            f"Idempotency-Key {key!r} was used for a different request body"
                            f" (order {first.order_id}); use a new key for a new order"
                        )
                    return Placed(OrderView.model_validate(first.response), replayed=True)
            requested = [(line.sku, line.quantity) for line in command.request.lines]
            catalogue = await uow.products.prices([sku for sku, _ in requested])
            order = Order.place(order_id, command.customer_id, price(requested, catalogue))
            await save(uow, order, events_topic=self._topic)
            view = OrderView.of(order)
            if key is not None:
                await uow.idempotency.record(command.customer_id, key, view.model_dump(mode="json"))
        log.info("order placed", order_id=order_id, customer_id=command.customer_id)
        return Placed(view, replayed=False)

    async def cancel(self, command: CancelOrder) -> OrderView:
        """A racing confirmation makes the append fail; reload and let the rules decide."""
        for attempt in range(1, self._attempts + 1):
            try:
                async with self._uow() as uow:
                    order = await load(uow, command.order_id)
                    if order.customer_id != command.customer_id:
                        if command.any_customer:
                            raise NotOrderOwner(f"only its customer may cancel {order.id}")
                        raise OrderNotFound(f"order {command.order_id} not found")
                    order.cancel(command.reason)
                    await save(uow, order, events_topic=self._topic)
                return OrderView.of(order)
            except ConcurrencyError:
                log.info("cancel lost a race, reloading", order_id=command.order_id)
                if attempt == self._attempts:
                    raise
        raise AssertionError("unreachable")

    async def get(self, query: GetOrder) -> OrderView:
        async with self._uow() as uow:
            order = await load(uow, query.order_id)
        if order.customer_id != query.customer_id and not query.any_customer:
            raise OrderNotFound(f"order {query.order_id} not found")
        return OrderView.of(order)


# Every command from the saga gets exactly one outcome on checkout.events, also when repeated:
# the event it caused, that event again (the order was already in the state asked for), or
# OrderCommandRefused (the order's state forbids it). Only a command for an order that does not
# exist fails loudly (PermanentError: dead-lettered with the reason). A ConcurrencyError
# propagates: the runner retries the whole transaction, which reloads the order, and the rules
# decide against the state that won the race.


async def confirm_order(
    envelope: Envelope, command: ConfirmOrder, uow: CheckoutUnitOfWork, *, events_topic: str
) -> None:
    order = await _order_for_command(uow, command.order_id)
    try:
        order.confirm()
    except OrderRuleViolation as exc:
        await _refuse(uow, order, "ConfirmOrder", exc, envelope, events_topic=events_topic)
        return
    await _save_or_republish(uow, order, OrderConfirmed, envelope, events_topic=events_topic)


async def reject_order(
    envelope: Envelope, command: RejectOrder, uow: CheckoutUnitOfWork, *, events_topic: str
) -> None:
    order = await _order_for_command(uow, command.order_id)
    try:
        order.reject(command.reason)
    except OrderRuleViolation as exc:
        await _refuse(uow, order, "RejectOrder", exc, envelope, events_topic=events_topic)
        return
    await _save_or_republish(uow, order, OrderRejected, envelope, events_topic=events_topic)


async def _save_or_republish(
    uow: CheckoutUnitOfWork,
    order: Order,
    outcome: type[Message],
    caused_by: Envelope,
    *,
    events_topic: str,
) -> None:
    if order.pending:
        await save(uow, order, events_topic=events_topic, caused_by=caused_by)
        return
    # already in the state asked for (the domain recorded nothing): answer as the first time
    log.info("command repeated, outcome re-published", order_id=order.id, outcome=outcome.TYPE)
    await republish(uow, order.id, outcome, events_topic=events_topic)


async def _refuse(
    uow: CheckoutUnitOfWork,
    order: Order,
    command: RefusableCommand,
    violation: OrderRuleViolation,
    caused_by: Envelope,
    *,
    events_topic: str,
) -> None:
    # Straight to the outbox, not into the order's stream: nothing about the order changed.
    # The stream version is the read side's consistency token (the ETag, what a view waits
    # for); a refusal that bumped it would announce a change that never happened, and the
    # aggregate would need a branch in `apply` for a non-event. The id is the order's and the
    # command type's, so a repeat says the same under the same id (the order's status is
    # terminal here, so the message cannot differ either) and downstream inboxes drop it.
    refused = OrderCommandRefused(
        order_id=order.id, command=command, status=str(order.status), reason=str(violation)
    )
    log.info("command refused", order_id=order.id, command=command, status=order.status)
    envelope = Envelope.wrap(
        refused,
        key=order.id,
        producer=PRODUCER,
        correlation_id=order.id,
        caused_by=caused_by,
        event_id=deterministic_id(PRODUCER, order.id, command, "refused"),
    )
    await uow.outbox.append(events_topic, envelope)


async def _order_for_command(uow: OrderUnitOfWork, order_id: str) -> Order:
    try:
        return await load(uow, order_id)
    except OrderNotFound as exc:
        raise PermanentError(str(exc)) from exc
