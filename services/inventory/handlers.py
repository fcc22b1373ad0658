"""Inventory use cases, run inside the consumer runner's unit of work (inbox already claimed).

Outcomes carry deterministic event ids derived from the order (or shipment): handling the same
order again, under any event id, re-sends the first outcome with the same id (and changes no
stock), so downstream inboxes drop the repeat. Every command is answered, also when there was
nothing to do: the saga waits on a reply, never on silence.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.inventory.v1 import (
    ReleaseStock,
    ReserveStock,
    StockLevelChanged,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from schemas.inventory.v1 import Shortage as ShortageV1
from schemas.registry import Message
from schemas.warehouse.v1 import StockReceived
from services.inventory import domain
from services.inventory.ports import InventoryUnitOfWork
from shared.envelope import Envelope, deterministic_id
from shared.errors import PermanentError
from shared.observability.logging import get_logger

PRODUCER = "inventory"
MAX_LINE_QUANTITY = 1000  # schemas.fields.Quantity
RESERVATION_RELEASED = "the order's reservation was released"
log = get_logger(__name__)


async def reserve_stock(
    envelope: Envelope, command: ReserveStock, uow: InventoryUnitOfWork, *, out: str
) -> None:
    existing = await uow.stock.reservation(command.order_id)
    if existing is not None:
        # A repeat under a new event id, or a ReserveStock after the order's release: answer
        # (see _outcome) and reserve nothing.
        log.info("reservation repeated", order_id=command.order_id, status=existing.status)
        await _emit(uow, out, envelope, [_outcome(existing)])
        return
    requested = domain.merge_lines((line.sku, line.quantity) for line in command.lines)
    too_many = {sku: q for sku, q in requested.items() if q > MAX_LINE_QUANTITY}
    if too_many:
        # a command no reply can describe (StockLine caps a quantity): refuse it loudly, once
        raise PermanentError(
            f"ReserveStock for {command.order_id} asks more than {MAX_LINE_QUANTITY} of one SKU"
            f" after merging its lines: {too_many}"
        )
    levels = await uow.stock.lock_levels(list(requested))
    reservation, changed = domain.allocate(command.order_id, requested, levels)
    await uow.stock.save_levels(changed)
    # A concurrent handler of the same order (a zombie after a rebalance) fails here on the
    # primary key and is retried, then takes the branch above.
    await uow.stock.add_reservation(reservation)
    log.info("reservation decided", order_id=command.order_id, status=reservation.status)
    await _emit(
        uow,
        out,
        envelope,
        [_outcome(reservation), *_level_changes(changed, command.order_id, "reserved")],
    )


async def release_stock(
    envelope: Envelope, command: ReleaseStock, uow: InventoryUnitOfWork, *, out: str
) -> None:
    reservation = await uow.stock.reservation(command.order_id)
    if reservation is None:
        # Released before it reserved (the saga compensated while its ReserveStock was still
        # on the way): record it, so that the late ReserveStock fails instead of holding stock
        # for an order given up on. A ReserveStock of the order handled concurrently fails on
        # the primary key, is retried, and finds this row.
        reservation = domain.released_unreserved(command.order_id)
        await uow.stock.add_reservation(reservation)
    released = _released(reservation)
    if reservation.status != "reserved":
        # Holding nothing (failed, or released already) still gets its answer, under the id
        # of the order's release, so every repeat says the same.
        log.info("release answered, nothing held", order_id=command.order_id)
        await _emit(uow, out, envelope, [released])
        return
    levels = await uow.stock.lock_levels([sku for sku, _ in reservation.lines])
    changed = domain.release(reservation, levels)
    await uow.stock.save_levels(changed)
    await uow.stock.mark_released(command.order_id)
    log.info("reservation released", order_id=command.order_id, reason=command.reason)
    await _emit(
        uow, out, envelope, [released, *_level_changes(changed, command.order_id, "released")]
    )


async def receive_stock(
    envelope: Envelope, event: StockReceived, uow: InventoryUnitOfWork, *, out: str
) -> None:
    # The inbox drops a redelivered record; this drops the same shipment sent twice by the
    # warehouse under two event ids.
    if not await uow.stock.add_shipment(event.shipment_id, event.sku, event.quantity):
        log.info("shipment already received", shipment_id=event.shipment_id)
        return
    level = await uow.stock.add_on_hand(event.sku, event.quantity)
    log.info("stock received", sku=event.sku, quantity=event.quantity, on_hand=level.on_hand)
    await _emit(uow, out, envelope, [_level_changed(level, "shipment", event.shipment_id)])


Keyed = tuple[Message, str, str]  # message, key, deterministic id seed


def _outcome(r: domain.Reservation) -> Keyed:
    if r.status == "released":
        # Stock given back is not taken again. Not the order's first answer (that may have
        # been StockReserved), so not its id either: one id names one message, or inboxes
        # would refuse this one as a collision.
        failed = StockReservationFailed(
            order_id=r.order_id, reason=RESERVATION_RELEASED, shortages=[]
        )
        return failed, r.order_id, f"reservation-after-release:{r.order_id}"
    seed = f"reservation:{r.order_id}"
    if r.status == "failed":
        shortages = [
            ShortageV1(sku=s.sku, requested=s.requested, available=s.available) for s in r.shortages
        ]
        reason = r.reason or "insufficient stock"
        failed = StockReservationFailed(order_id=r.order_id, reason=reason, shortages=shortages)
        return failed, r.order_id, seed
    return StockReserved(order_id=r.order_id, lines=_lines(r)), r.order_id, seed


def _released(r: domain.Reservation) -> Keyed:
    # a failed reservation's lines were asked for, never held
    lines = [] if r.status == "failed" else _lines(r)
    released = StockReleased(order_id=r.order_id, lines=lines)
    return released, r.order_id, f"released:{r.order_id}"


def _lines(r: domain.Reservation) -> list[StockLine]:
    return [StockLine(sku=sku, quantity=q) for sku, q in r.lines]


def _level_changed(level: domain.Level, *cause: str) -> Keyed:
    changed = StockLevelChanged(
        sku=level.sku, on_hand=level.on_hand, reserved=level.reserved, available=level.available
    )
    return changed, level.sku, ":".join(("level", level.sku, *cause))


def _level_changes(levels: Iterable[domain.Level], order_id: str, step: str) -> list[Keyed]:
    return [_level_changed(level, step, order_id) for level in levels]


async def _emit(
    uow: InventoryUnitOfWork, topic: str, cause: Envelope, messages: Iterable[Keyed]
) -> None:
    for message, key, seed in messages:
        envelope = Envelope.wrap(
            message,
            key=key,
            producer=PRODUCER,
            caused_by=cause,
            event_id=deterministic_id(PRODUCER, seed),
        )
        await uow.outbox.append(topic, envelope)
