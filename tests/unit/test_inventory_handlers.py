"""Inventory handlers against in-memory fakes of the service's own store port."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest

from schemas.inventory.v1 import ReleaseStock, ReserveStock, StockLine
from schemas.registry import Message
from schemas.warehouse.v1 import StockReceived
from services.inventory import handlers
from services.inventory.domain import Level, Reservation
from shared.envelope import Envelope, deterministic_id
from shared.errors import PermanentError
from shared.memory import MemoryDatabase, MemoryOutbox

OUT = "inventory.events"


@dataclass
class FakeStock:
    levels: dict[str, Level] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    shipments: set[str] = field(default_factory=set)

    async def lock_levels(self, skus: Sequence[str]) -> dict[str, Level]:
        return {s: self.levels[s] for s in skus if s in self.levels}

    async def save_levels(self, levels: Sequence[Level]) -> None:
        for level in levels:
            assert level.sku in self.levels
            self.levels[level.sku] = level

    async def add_on_hand(self, sku: str, quantity: int) -> Level:
        self.levels[sku] = self.levels.get(sku, Level(sku, 0, 0)).receive(quantity)
        return self.levels[sku]

    async def reservation(self, order_id: str) -> Reservation | None:
        return self.reservations.get(order_id)

    async def add_reservation(self, reservation: Reservation) -> None:
        assert reservation.order_id not in self.reservations, "primary key"
        self.reservations[reservation.order_id] = reservation

    async def mark_released(self, order_id: str) -> None:
        self.reservations[order_id] = replace(self.reservations[order_id], status="released")

    async def add_shipment(self, shipment_id: str, sku: str, quantity: int) -> bool:
        if shipment_id in self.shipments:
            return False
        self.shipments.add(shipment_id)
        return True


@dataclass
class FakeUoW:
    stock: FakeStock
    outbox: MemoryOutbox = field(default_factory=lambda: MemoryOutbox(MemoryDatabase()))

    def sent(self) -> list[Envelope]:
        return [e for _, e in self.outbox.staged]


def _envelope(message: Message, key: str) -> Envelope:
    return Envelope.wrap(message, key=key, producer="test", event_id=uuid.uuid4())


async def _reserve(uow: FakeUoW, order_id: str, **lines: int) -> None:
    command = ReserveStock(
        order_id=order_id,
        lines=[StockLine(sku=s.replace("_", "-"), quantity=q) for s, q in lines.items()],
    )
    await handlers.reserve_stock(_envelope(command, order_id), command, uow, out=OUT)


async def test_reservation_holds_stock_and_announces_it() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 5, 0)}))
    await _reserve(uow, "o1", TEA_001=2)
    assert uow.stock.levels["TEA-001"] == Level("TEA-001", 5, 2)
    sent = uow.sent()
    assert [(e.type, e.key) for e in sent] == [
        ("StockReserved", "o1"),
        ("StockLevelChanged", "TEA-001"),
    ]
    assert sent[1].payload == {"sku": "TEA-001", "on_hand": 5, "reserved": 2, "available": 3}
    assert all(e.correlation_id == "o1" for e in sent)


async def test_lines_merging_past_the_quantity_limit_are_refused_holding_nothing() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 5000, 0)}))
    command = ReserveStock(order_id="o1", lines=[StockLine(sku="TEA-001", quantity=600)] * 2)
    with pytest.raises(PermanentError, match="TEA-001"):
        await handlers.reserve_stock(_envelope(command, "o1"), command, uow, out=OUT)
    assert uow.stock.levels["TEA-001"].reserved == 0
    assert uow.sent() == []
    assert uow.stock.reservations == {}


async def test_shortage_fails_the_whole_order_and_holds_nothing() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 5, 0), "MUG-001": Level("MUG-001", 1, 0)}))
    await _reserve(uow, "o1", TEA_001=2, MUG_001=2)
    assert uow.stock.levels["TEA-001"].reserved == 0
    (failed,) = uow.sent()
    assert failed.type == "StockReservationFailed"
    assert failed.payload["shortages"] == [{"sku": "MUG-001", "requested": 2, "available": 1}]


async def test_same_order_under_a_new_event_id_reserves_once_and_answers_the_same() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 5, 0)}))
    await _reserve(uow, "o1", TEA_001=2)
    await _reserve(uow, "o1", TEA_001=2)
    assert uow.stock.levels["TEA-001"].reserved == 2
    first, _, again = uow.sent()
    assert again.type == "StockReserved"
    assert again.event_id == first.event_id


async def test_a_repeated_failed_order_fails_again_even_after_stock_arrived() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 1, 0)}))
    await _reserve(uow, "o1", TEA_001=2)
    await uow.stock.add_on_hand("TEA-001", 10)
    await _reserve(uow, "o1", TEA_001=2)
    first, again = uow.sent()
    assert again.type == "StockReservationFailed"
    assert again.event_id == first.event_id
    assert uow.stock.levels["TEA-001"].reserved == 0


async def _release(uow: FakeUoW, order_id: str) -> None:
    command = ReleaseStock(order_id=order_id, reason="payment declined")
    await handlers.release_stock(_envelope(command, order_id), command, uow, out=OUT)


async def test_release_gives_stock_back_once() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 5, 0)}))
    await _reserve(uow, "o1", TEA_001=2)
    await _release(uow, "o1")
    await _release(uow, "o1")
    assert uow.stock.levels["TEA-001"] == Level("TEA-001", 5, 0)
    released = [e for e in uow.sent() if e.type == "StockReleased"]
    assert len(released) == 2
    assert released[0].event_id == released[1].event_id
    assert released[0].payload["lines"] == [{"sku": "TEA-001", "quantity": 2}]


def _answers(uow: FakeUoW) -> list[tuple[str, str, dict[str, object], uuid.UUID]]:
    """What the order-keyed replies said: type, key, payload, event id."""
    return [
        (e.type, e.key, e.payload, e.event_id) for e in uow.sent() if e.type != "StockLevelChanged"
    ]


async def test_releasing_an_order_that_never_reserved_answers_and_blocks_a_late_reserve() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 5, 1)}))
    await _release(uow, "o1")
    await _release(uow, "o1")  # repeated under a new event id
    await _reserve(uow, "o1", TEA_001=2)  # the saga's ReserveStock, arriving late
    released = deterministic_id("inventory", "released:o1")
    nothing: dict[str, object] = {"order_id": "o1", "lines": []}
    first, again, late = _answers(uow)
    assert first == again == ("StockReleased", "o1", nothing, released)
    assert late[:3] == (
        "StockReservationFailed",
        "o1",
        {"order_id": "o1", "reason": "the order's reservation was released", "shortages": []},
    )
    assert late[3] not in {released, deterministic_id("inventory", "reservation:o1")}
    assert uow.stock.levels["TEA-001"] == Level("TEA-001", 5, 1)
    assert uow.stock.reservations["o1"] == Reservation("o1", "released", ())


async def test_releasing_a_failed_reservation_answers_that_nothing_was_released() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 1, 0)}))
    await _reserve(uow, "o1", TEA_001=2)
    await _release(uow, "o1")
    await _release(uow, "o1")
    await _reserve(uow, "o1", TEA_001=2)  # a repeat still gets the order's first answer
    failed, released, again, repeat = _answers(uow)
    assert released[:3] == again[:3] == ("StockReleased", "o1", {"order_id": "o1", "lines": []})
    assert released[3] == again[3] == deterministic_id("inventory", "released:o1")
    assert repeat == failed
    assert failed[0] == "StockReservationFailed"
    assert uow.stock.levels["TEA-001"] == Level("TEA-001", 1, 0)


async def test_a_reserve_repeated_after_the_release_fails_under_an_id_of_its_own() -> None:
    uow = FakeUoW(FakeStock({"TEA-001": Level("TEA-001", 5, 0)}))
    await _reserve(uow, "o1", TEA_001=2)
    await _release(uow, "o1")
    await _reserve(uow, "o1", TEA_001=2)
    await _reserve(uow, "o1", TEA_001=2)
    reserved, released, late, again = _answers(uow)
    assert (reserved[0], released[0]) == ("StockReserved", "StockReleased")
    assert late == again
    assert late[:3] == (
        "StockReservationFailed",
        "o1",
        {"order_id": "o1", "reason": "the order's reservation was released", "shortages": []},
    )
    # one id never names two messages: the collision check would dead-letter a reused one
    assert late[3] not in {reserved[3], released[3]}
    assert uow.stock.levels["TEA-001"] == Level("TEA-001", 5, 0)


async def _receive(uow: FakeUoW, shipment: str, sku: str, quantity: int) -> None:
    event = StockReceived(sku=sku, quantity=quantity, shipment_id=shipment)
    await handlers.receive_stock(_envelope(event, sku), event, uow, out=OUT)


async def test_a_shipment_adds_stock_once_even_under_two_event_ids() -> None:
    uow = FakeUoW(FakeStock())
    await _receive(uow, "s1", "KETTLE-001", 4)
    await _receive(uow, "s1", "KETTLE-001", 4)
    await _receive(uow, "s2", "KETTLE-001", 1)
    assert uow.stock.levels["KETTLE-001"] == Level("KETTLE-001", 5, 0)
    assert [e.payload["on_hand"] for e in uow.sent()] == [4, 5]
