"""Leadline's message contracts: the topic catalogue and the versioned payload models.

Depends on pydantic only; every service and `shared/` read their contracts from here.
"""
