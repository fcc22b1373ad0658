"""The orchestrator's own contracts (its internal deadline topic)."""

from schemas.orchestrator import v1

__all__ = ["v1"]
