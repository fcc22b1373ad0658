from datetime import UTC, datetime
from decimal import Decimal

from services.receipts.domain import Line, Order, Receipt, issue
from services.receipts.render import compose, money, render_html, render_text


def _receipt(sku: str = "TEA-001", customer: str = "alice") -> Receipt:
    order = Order(
        "ord-7", customer, "EUR", (Line(sku, 2, 450, 900), Line("MUG-001", 1, 1299, 1299))
    )
    return issue(order, "LL-00000042", Decimal("0.20"), datetime(2026, 3, 1, 9, 30, tzinfo=UTC))


def test_money_has_two_minor_digits() -> None:
    assert money(0, "EUR") == "0.00 EUR"
    assert money(5, "EUR") == "0.05 EUR"
    assert money(123456, "USD") == "1234.56 USD"


def test_text_receipt_lists_lines_and_totals() -> None:
    rows = render_text(_receipt()).splitlines()
    assert rows[0] == "Leadline receipt LL-00000042"
    (tea,) = [r for r in rows if "TEA-001" in r]
    assert tea.split()[:3] == ["2", "x", "TEA-001"]
    assert tea.endswith("9.00 EUR")
    totals = {r.rsplit(None, 2)[0].strip(): r.rsplit(None, 2)[1] for r in rows[-3:]}
    assert totals == {"Subtotal": "21.99", "Tax 20%": "4.40", "Total": "26.39"}


def test_html_escapes_everything_that_came_from_outside() -> None:
    html = render_html(_receipt(customer="<script>alert(1)</script>"))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<td>26.39 EUR</td>" in html


def test_the_mail_is_the_same_bytes_with_a_stable_message_id_every_time() -> None:
    first = compose(_receipt(), sender="receipts@shop.example", recipient="alice@example.org")
    again = compose(_receipt(), sender="receipts@shop.example", recipient="alice@example.org")
    assert first["Message-ID"] == "<receipt.LL-00000042@shop.example>"
    assert first.as_bytes() == again.as_bytes()
    assert first.get_body(("plain",)) is not None
    assert first.get_body(("html",)) is not None
