"""Ports of the backbone: what handlers depend on. Each has a PostgreSQL implementation
(`shared.postgres`) and an in-memory twin (`shared.memory`) held to one contract test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self

from shared.envelope import Envelope


class ConcurrencyError(Exception):
    """An append stated an expected version that is no longer the stream's version."""


class DuplicateEventError(Exception):
    """An event id is already stored. Retrying cannot help (unlike ConcurrencyError): the same
    deterministic event was recorded before, so the caller's work is already done."""


@dataclass(frozen=True)
class NewEvent:
    """An event to append: payload already encoded to its newest schema version."""

    event_id: uuid.UUID
    type: str
    version: int
    payload: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedEvent:
    stream_id: str
    stream_version: int  # 1-based position inside its stream
    position: int  # global, increasing across all streams
    event_id: uuid.UUID
    type: str
    version: int  # schema version as stored: readers upcast
    payload: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class Snapshot:
    stream_id: str
    stream_version: int  # the state includes events 1..stream_version
    schema_version: int  # version of the snapshot's state shape; a mismatch means "ignore it"
    state: dict[str, Any]
    taken_at: datetime


class EventStore(Protocol):
    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> int:
        """Append after `expected_version` (0 for a new stream); return the new version.
        Raises ConcurrencyError when the stream has moved on."""
        ...

    async def load(
        self,
        stream_id: str,
        *,
        after_version: int = 0,
        up_to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[RecordedEvent]: ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def latest_snapshot(
        self, stream_id: str, *, up_to_version: int | None = None
    ) -> Snapshot | None: ...


class Outbox(Protocol):
    async def append(self, topic: str, envelope: Envelope) -> None:
        """Record a message to publish; it is published only if the transaction commits."""
        ...


class Claim(StrEnum):
    NEW = "new"  # first seen: apply the effects
    DUPLICATE = "duplicate"  # the same message again: skip its effects
    COLLISION = "collision"  # the id was seen before on another message: neither, refuse it


@dataclass(frozen=True)
class InboxEntry:
    """One message to claim: its id, where that id must be unique, and what the message is."""

    event_id: uuid.UUID
    scope: str
    fingerprint: str


class Inbox(Protocol):
    async def claim(
        self, consumer: str, event_id: uuid.UUID, *, scope: str, fingerprint: str
    ) -> Claim:
        """NEW the first time (consumer, scope, event_id) is claimed in a committed transaction.
        A later claim of that key is a DUPLICATE when its `fingerprint` (what the message is,
        e.g. type and key) matches the first one's, else a COLLISION: ids come from foreign
        producers too, and a reused id must not swallow a different message. `scope` is where
        the id must be unique (the topic and producer), so one id on two topics is two claims."""
        ...

    async def claim_many(self, consumer: str, messages: Sequence[InboxEntry]) -> list[Claim]:
        """`claim` for each of `messages` in order, in one round trip where the store allows:
        the same answers as claiming them one after the other in this transaction."""
        ...


class Transaction(Protocol):
    """An async block bound to one database transaction: leaving it without an exception
    commits; an exception rolls back."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UnitOfWork(Transaction, Protocol):
    """One database transaction: event appends, outbox rows and the inbox row commit together
    or not at all."""

    # read-only properties, so implementations may narrow the types (a Postgres unit of work
    # exposes Postgres adapters) and still satisfy the protocol under mypy --strict
    @property
    def events(self) -> EventStore: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def inbox(self) -> Inbox: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
