"""Orchestrator contracts, version 1. Published: never edit, add a version instead."""

from __future__ import annotations

from pydantic import Field

from schemas.fields import Id
from schemas.registry import REGISTRY, Message


@REGISTRY.register
class SagaDeadlinePassed(Message):
    """A waiting saga's deadline passed. Deadlines are messages on the saga's own stream, so
    they are ordered with its replies by the same agent; `deadline` names which deadline
    (a saga sets a new one at every step), so a stale one changes nothing."""

    TYPE = "SagaDeadlinePassed"
    VERSION = 1

    order_id: Id
    status: str = Field(min_length=1, max_length=40, description="the saga's status when set")
    deadline: int = Field(ge=1, description="the saga's deadline counter when set")
