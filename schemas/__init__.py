"""Leadline's message contracts: the topic catalogue and the versioned payload models.

Depends on pydantic only. Importing this package registers every model and upcaster in
`schemas.registry.REGISTRY`.
"""

from schemas import checkout, inventory, orchestrator, payments, receipts, warehouse

__all__ = ["checkout", "inventory", "orchestrator", "payments", "receipts", "warehouse"]
