"""The aggregate base: state changes only by recording events (DESIGN §5, STYLE 4).

A subclass keeps its state in `__init__(self, id)` (the state before any event), changes it
only in `apply` — one `match` branch per event type, ending in `case _: super().apply(event)` —
and guards commands with `ensure_…` checks that raise `DomainError` subclasses *before*
recording anything, so a refused command leaves no pending event behind.

    class Account(Aggregate):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.balance = 0

        def deposit(self, cents: int) -> None:
            self.ensure_positive(cents)
            self._record(Deposited(account_id=self.id, cents=cents))

        def apply(self, event: Message) -> None:
            match event:
                case Deposited(cents=cents):
                    self.balance += cents
                case _:
                    super().apply(event)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Self

from schemas.registry import Message


class DomainError(Exception):
    """A command broke an invariant; nothing was recorded."""


class Aggregate:
    """`version` counts every event applied, pending ones included; the stream holds
    `version - len(pending)` of them until the repository saves."""

    SNAPSHOT_SCHEMA_VERSION: ClassVar[int | None] = None
    """Set (and bump whenever `snapshot_state`'s shape changes) to enable snapshots; a stored
    snapshot with another schema version is ignored and the stream replayed instead."""

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self.pending: list[Message] = []

    def apply(self, event: Message) -> None:
        """Mutate state for one event. Never fails for a recorded event: checks belong in
        the command methods, or history could become unloadable."""
        raise TypeError(f"{type(self).__name__} has no branch for {event.TYPE}")

    def _record(self, event: Message) -> None:
        self.apply(event)
        self.version += 1
        self.pending.append(event)

    @classmethod
    def from_history(cls, id: str, events: Iterable[Message]) -> Self:
        """Rebuild from committed events (newest schema versions), oldest first."""
        aggregate = cls(id)
        aggregate.replay(events)
        return aggregate

    def replay(self, events: Iterable[Message]) -> None:
        """Apply committed events on top of the current state (e.g. a snapshot's tail)."""
        for event in events:
            self.apply(event)
            self.version += 1

    def mark_committed(self) -> list[Message]:
        """The repository stored the pending events: hand them over and forget them."""
        committed, self.pending = self.pending, []
        return committed

    def snapshot_state(self) -> dict[str, Any]:
        """JSON-ready state for a snapshot; only for classes with SNAPSHOT_SCHEMA_VERSION."""
        raise NotImplementedError(f"{type(self).__name__} takes no snapshots")

    @classmethod
    def from_snapshot(cls, id: str, version: int, state: dict[str, Any]) -> Self:
        """Inverse of `snapshot_state`: the aggregate as it stood at `version`."""
        raise NotImplementedError(f"{cls.__name__} takes no snapshots")
