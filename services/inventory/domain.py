"""Stock arithmetic and the all-or-nothing allocation rule. Pure: no I/O, no framework.

Invariant of every `Level`: 0 <= reserved <= on_hand, so on_hand = available + reserved with
available >= 0. The database repeats it as CHECK constraints, the last line of defence against
an oversell if this code were ever wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

MAX_REASON = 500


class StockError(ValueError):
    """A change would break the stock invariant (a bug upstream of it, never a user error)."""


@dataclass(frozen=True)
class Level:
    sku: str
    on_hand: int
    reserved: int

    def __post_init__(self) -> None:
        if not 0 <= self.reserved <= self.on_hand:
            raise StockError(f"{self.sku}: reserved {self.reserved} outside 0..{self.on_hand}")

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def reserve(self, quantity: int) -> Level:
        self.ensure_positive(quantity)
        if quantity > self.available:
            raise StockError(f"{self.sku}: {quantity} requested, {self.available} available")
        return replace(self, reserved=self.reserved + quantity)

    def release(self, quantity: int) -> Level:
        self.ensure_positive(quantity)
        return replace(self, reserved=self.reserved - quantity)

    def receive(self, quantity: int) -> Level:
        self.ensure_positive(quantity)
        return replace(self, on_hand=self.on_hand + quantity)

    def ensure_positive(self, quantity: int) -> None:
        if quantity <= 0:
            raise StockError(f"{self.sku}: quantity must be positive, got {quantity}")


def empty(sku: str) -> Level:
    """A SKU the store has never seen: nothing on hand, nothing reserved."""
    return Level(sku, 0, 0)


@dataclass(frozen=True)
class Shortage:
    sku: str
    requested: int
    available: int


Status = Literal["reserved", "failed", "released"]


@dataclass(frozen=True)
class Reservation:
    """What one order asked for and what became of it; at most one per order, ever."""

    order_id: str
    status: Status
    lines: tuple[tuple[str, int], ...]  # merged per SKU, sorted by SKU
    reason: str | None = None
    shortages: tuple[Shortage, ...] = ()


def merge_lines(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """One quantity per SKU, in SKU order: the order rows are locked in, on every instance, so
    two reservations over the same SKUs can never wait for each other in a cycle."""
    merged: dict[str, int] = {}
    for sku, quantity in lines:
        merged[sku] = merged.get(sku, 0) + quantity
    return dict(sorted(merged.items()))


def allocate(
    order_id: str, requested: Mapping[str, int], levels: Mapping[str, Level]
) -> tuple[Reservation, list[Level]]:
    """All or nothing: either every line fits (the new levels are returned) or none is taken
    and the reservation says which SKUs fell short."""
    current = {sku: levels.get(sku, empty(sku)) for sku in requested}
    shortages = tuple(
        Shortage(sku, quantity, current[sku].available)
        for sku, quantity in requested.items()
        if quantity > current[sku].available
    )
    lines = tuple(requested.items())
    if shortages:
        reason = "insufficient stock for " + ", ".join(s.sku for s in shortages)
        if len(reason) > MAX_REASON:  # the published field is bounded; the shortages say it all
            reason = f"insufficient stock for {len(shortages)} SKUs"
        return Reservation(order_id, "failed", lines, reason, shortages), []
    changed = [current[sku].reserve(quantity) for sku, quantity in requested.items()]
    return Reservation(order_id, "reserved", lines), changed


def released_unreserved(order_id: str) -> Reservation:
    """The record of a release that came before any reservation (the saga compensated an order
    whose ReserveStock is still on its way): it holds nothing, and being the order's one
    reservation, it keeps a late ReserveStock from taking stock the order will never use."""
    return Reservation(order_id, "released", ())


def release(reservation: Reservation, levels: Mapping[str, Level]) -> list[Level]:
    """The levels after giving back everything a held reservation holds."""
    if reservation.status != "reserved":
        raise StockError(f"order {reservation.order_id} holds nothing ({reservation.status})")
    return [levels.get(sku, empty(sku)).release(q) for sku, q in reservation.lines]
