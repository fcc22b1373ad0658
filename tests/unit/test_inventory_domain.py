import pytest

from services.inventory.domain import (
    Level,
    Reservation,
    Shortage,
    StockError,
    allocate,
    merge_lines,
    release,
    released_unreserved,
)


def test_merge_lines_sums_repeated_skus_and_sorts_them() -> None:
    merged = merge_lines([("TEA-002", 1), ("MUG-001", 2), ("TEA-002", 3)])
    assert list(merged.items()) == [("MUG-001", 2), ("TEA-002", 4)]


def test_allocation_takes_every_line_when_all_fit() -> None:
    levels = {"A-1": Level("A-1", 5, 1), "B-1": Level("B-1", 2, 0)}
    reservation, changed = allocate("o1", {"A-1": 4, "B-1": 2}, levels)
    assert reservation == Reservation("o1", "reserved", (("A-1", 4), ("B-1", 2)))
    assert changed == [Level("A-1", 5, 5), Level("B-1", 2, 2)]


def test_allocation_is_all_or_nothing_and_names_each_shortage() -> None:
    levels = {"A-1": Level("A-1", 5, 0), "B-1": Level("B-1", 3, 2)}
    reservation, changed = allocate("o1", {"A-1": 1, "B-1": 2, "C-1": 1}, levels)
    assert changed == []
    assert reservation.status == "failed"
    assert reservation.shortages == (Shortage("B-1", 2, 1), Shortage("C-1", 1, 0))
    assert reservation.reason == "insufficient stock for B-1, C-1"


def test_allocation_of_exactly_the_last_units_succeeds() -> None:
    reservation, changed = allocate("o1", {"A-1": 3}, {"A-1": Level("A-1", 3, 0)})
    assert reservation.status == "reserved"
    assert changed[0].available == 0


def test_release_gives_back_what_the_reservation_holds() -> None:
    held = Reservation("o1", "reserved", (("A-1", 2),))
    assert release(held, {"A-1": Level("A-1", 5, 3)}) == [Level("A-1", 5, 1)]


def test_release_of_a_failed_reservation_is_refused() -> None:
    with pytest.raises(StockError):
        release(Reservation("o1", "failed", (("A-1", 2),)), {"A-1": Level("A-1", 5, 3)})


@pytest.mark.parametrize(("on_hand", "reserved"), [(1, 2), (1, -1), (-1, -1)])
def test_a_level_outside_the_invariant_cannot_exist(on_hand: int, reserved: int) -> None:
    with pytest.raises(StockError):
        Level("A-1", on_hand, reserved)


def test_reserving_more_than_available_raises() -> None:
    with pytest.raises(StockError):
        Level("A-1", 2, 1).reserve(2)


def test_on_hand_is_available_plus_reserved() -> None:
    level = Level("A-1", 7, 0).reserve(3).receive(2).release(1)
    assert (level.on_hand, level.reserved, level.available) == (9, 2, 7)


def test_the_reason_stays_short_enough_to_publish_for_fifty_missing_skus() -> None:
    requested = {f"SKUNUMBER{i:03d}-LONGSUFFIX": 1 for i in range(50)}
    reservation, _ = allocate("o1", requested, {})
    assert len(reservation.shortages) == 50
    assert reservation.reason == "insufficient stock for 50 SKUs"


def test_a_release_before_any_reservation_is_recorded_holding_nothing() -> None:
    record = released_unreserved("o1")
    assert record == Reservation("o1", "released", ())
    with pytest.raises(StockError, match="holds nothing"):
        release(record, {})
