"""Contracts of the upstream warehouse (not ours): `warehouse.events`."""

from schemas.warehouse import v1

__all__ = ["v1"]
