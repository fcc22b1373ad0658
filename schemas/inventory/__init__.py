"""Contracts of the inventory service: `inventory.commands` and `inventory.events`."""

from schemas.inventory import v1

__all__ = ["v1"]
