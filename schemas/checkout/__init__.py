"""Contracts of the checkout service: `checkout.events` and `checkout.commands`."""

from schemas.checkout import upcasters, v1, v2

__all__ = ["upcasters", "v1", "v2"]
