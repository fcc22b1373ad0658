"""Inventory: stock per SKU and reservations per order (DESIGN §1, issue 5)."""
