"""Contracts with the upstream payment provider: `payments.requests`, `payments.events`."""

from schemas.payments import v1

__all__ = ["v1"]
