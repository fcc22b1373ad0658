from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.receipts.domain import Line, Order, ReceiptError, issue, receipt_number, tax_cents


@pytest.mark.parametrize(
    ("subtotal", "rate", "tax"),
    [
        (1000, "0.20", 200),
        (1, "0.20", 0),  # 0.2 cent rounds down
        (3, "0.20", 1),  # 0.6 cent rounds up
        (25, "0.10", 3),  # exactly half a cent rounds up (half-up, not banker's)
        (35, "0.10", 4),  # ...also from an odd cent: 3.5 -> 4, where half-even would give 4
        (45, "0.10", 5),  # 4.5 -> 5, where half-even would give 4
        (999, "0.075", 75),  # 74.925 -> 75
        (0, "0.20", 0),
        (1234, "0", 0),
    ],
)
def test_tax_is_charged_on_the_subtotal_rounded_half_up(subtotal: int, rate: str, tax: int) -> None:
    assert tax_cents(subtotal, Decimal(rate)) == tax


def test_a_negative_tax_rate_is_refused() -> None:
    with pytest.raises(ReceiptError):
        tax_cents(100, Decimal("-0.1"))


def test_receipt_numbers_are_zero_padded_per_issuer() -> None:
    assert receipt_number("LL", 42) == "LL-00000042"
    assert receipt_number("SHOP2", 99_999_999) == "SHOP2-99999999"


@pytest.mark.parametrize("sequence", [0, -1, 100_000_000])
def test_a_sequence_that_does_not_fit_the_format_is_refused(sequence: int) -> None:
    with pytest.raises(ReceiptError):
        receipt_number("LL", sequence)


def test_issue_totals_the_lines_and_adds_tax_once() -> None:
    order = Order(
        "o1",
        "alice",
        "EUR",
        (Line("TEA-001", 3, 333, 999), Line("MUG-001", 1, 1, 1)),
    )
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    receipt = issue(order, "LL-00000001", Decimal("0.20"), at)
    # per-line rounding would give 200 + 0 = 200; on the subtotal 1000 * 0.2 = 200 as well, but
    # the total is always subtotal + tax exactly
    assert (receipt.subtotal_cents, receipt.tax_cents, receipt.total_cents) == (1000, 200, 1200)
    assert receipt.lines == order.lines
    assert receipt.issued_at == at
    assert receipt.customer_id == "alice"


def test_tax_on_the_subtotal_differs_from_summing_per_line_tax() -> None:
    order = Order("o1", "bob", "EUR", tuple(Line(f"TEA-00{i}", 1, 3, 3) for i in range(1, 4)))
    receipt = issue(order, "LL-00000001", Decimal("0.10"), datetime.now(UTC))
    # three lines of 0.3 cent tax each would round to 0; the subtotal's 0.9 rounds to 1
    assert receipt.tax_cents == 1
    assert receipt.total_cents == 10
