"""Upcasters for checkout contracts: each takes version n's payload to version n + 1."""

from __future__ import annotations

from schemas.registry import REGISTRY, Payload

# Every v1 OrderPlaced was written while the catalogue priced in euros only.
V1_CURRENCY = "EUR"


@REGISTRY.upcaster("OrderPlaced", from_version=1)
def order_placed_v1_to_v2(payload: Payload) -> Payload:
    lines = [
        {**line, "line_total_cents": line["quantity"] * line["unit_price_cents"]}
        for line in payload["lines"]
    ]
    return {**payload, "lines": lines, "currency": V1_CURRENCY}
