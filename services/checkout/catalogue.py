"""The products checkout sells in local runs, seeded at start-up (existing rows are kept)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    unit_price_cents: int
    currency: str = "EUR"


SEED: tuple[Product, ...] = (
    Product("TEA-001", "Sencha green tea, 100 g", 850),
    Product("TEA-002", "Assam black tea, 250 g", 1290),
    Product("TEA-003", "Rooibos, 200 g", 990),
    Product("CUP-001", "Porcelain tea cup", 1450),
    Product("POT-001", "Cast-iron tea pot, 0.8 l", 4900),
    Product("KETTLE-01", "Gooseneck kettle", 6500),
    Product("FILTER-100", "Paper tea filters, 100 pieces", 350),
)
