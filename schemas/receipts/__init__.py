"""Contracts of the receipts service: `receipts.events`."""

from schemas.receipts import v1

__all__ = ["v1"]
