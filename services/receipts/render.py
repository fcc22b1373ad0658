"""Receipts as text and HTML, and as the e-mail message every channel delivers.

The HTML is built with f-strings; every value that came from outside (SKUs, ids, currency)
passes through `html.escape`, so a hostile SKU cannot inject markup into a customer's mail.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

from services.receipts.domain import Receipt


def money(cents: int, currency: str) -> str:
    """`12.34 EUR`. Assumes two minor digits, as every currency checkout sells in has."""
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def tax_label(receipt: Receipt) -> str:
    return f"Tax {(receipt.tax_rate * 100).normalize():f}%"


def render_text(receipt: Receipt) -> str:
    rows = [
        f"Leadline receipt {receipt.number}",
        f"Order {receipt.order_id} - customer {receipt.customer_id}",
        f"Issued {receipt.issued_at.isoformat()}",
        "",
    ]
    for line in receipt.lines:
        unit = money(line.unit_price_cents, receipt.currency)
        total = money(line.line_total_cents, receipt.currency)
        rows.append(f"{line.quantity:>4} x {line.sku:<20} @ {unit:>14} {total:>16}")
    rows += [
        "",
        f"{'Subtotal':<46}{money(receipt.subtotal_cents, receipt.currency):>16}",
        f"{tax_label(receipt):<46}{money(receipt.tax_cents, receipt.currency):>16}",
        f"{'Total':<46}{money(receipt.total_cents, receipt.currency):>16}",
    ]
    return "\n".join(rows) + "\n"


def _sum_row(label: str, amount: str) -> str:
    return f'<tr><td colspan="3">{escape(label)}</td><td>{escape(amount)}</td></tr>'


def render_html(receipt: Receipt) -> str:
    cur = receipt.currency
    lines = "\n".join(
        f"<tr><td>{line.quantity}</td><td>{escape(line.sku)}</td>"
        f"<td>{escape(money(line.unit_price_cents, cur))}</td>"
        f"<td>{escape(money(line.line_total_cents, cur))}</td></tr>"
        for line in receipt.lines
    )
    number = escape(receipt.number)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Receipt {number}</title></head>
<body>
<h1>Receipt {number}</h1>
<p>Order {escape(receipt.order_id)}, customer {escape(receipt.customer_id)},
issued {escape(receipt.issued_at.isoformat())}</p>
<table>
<tr><th>Qty</th><th>SKU</th><th>Unit price</th><th>Line total</th></tr>
{lines}
{_sum_row("Subtotal", money(receipt.subtotal_cents, cur))}
{_sum_row(tax_label(receipt), money(receipt.tax_cents, cur))}
{_sum_row("Total", money(receipt.total_cents, cur))}
</table>
</body></html>
"""


def message_id(receipt_number: str, domain: str) -> str:
    """Stable per receipt: a resent message is recognisably the one sent before."""
    return f"<receipt.{receipt_number}@{domain}>"


def compose(receipt: Receipt, *, sender: str, recipient: str) -> EmailMessage:
    """The receipt as a text + HTML e-mail; byte-identical for the same receipt and addresses."""
    mail = EmailMessage()
    mail["Message-ID"] = message_id(receipt.number, sender.rpartition("@")[2] or "leadline")
    mail["Date"] = format_datetime(receipt.issued_at)
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = f"Your Leadline receipt {receipt.number}"
    mail["X-Leadline-Receipt"] = receipt.number
    mail.set_content(render_text(receipt))
    mail.add_alternative(render_html(receipt), subtype="html")
    # The default boundary is random; a fixed one keeps a re-rendered receipt byte-identical.
    mail.set_boundary(f"=_leadline.receipt.{receipt.number}_=")
    return mail
