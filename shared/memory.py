"""In-memory twins of the backbone's ports, for unit tests of handlers and domain code.

They keep the same promises as the PostgreSQL adapters (the contract tests run against both):
nothing is visible before commit, a rolled-back unit of work leaves no trace, a stale expected
version raises ConcurrencyError, and an inbox key is claimed once.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import orjson

from shared.envelope import Envelope
from shared.ports import (
    Claim,
    ConcurrencyError,
    DuplicateEventError,
    InboxEntry,
    NewEvent,
    RecordedEvent,
    Snapshot,
)

InboxKey = tuple[str, str, uuid.UUID]  # consumer, scope, event id


@dataclass
class MemoryDatabase:
    """What a PostgreSQL database would hold: committed state only."""

    streams: dict[str, list[RecordedEvent]] = field(default_factory=dict)
    snapshots: dict[str, list[Snapshot]] = field(default_factory=dict)
    outbox: list[tuple[str, Envelope]] = field(default_factory=list)
    inbox: dict[InboxKey, str] = field(default_factory=dict)  # key -> fingerprint
    positions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # recorded_at only ever increases, so "as of" a recorded_at is a prefix of every stream.
    clock: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))


def _json(value: dict[str, Any]) -> dict[str, Any]:
    """What a jsonb column gives back: a copy (the caller's later mutations must not leak into
    what was stored) and only what JSON can carry (a value PostgreSQL would refuse fails here)."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(value))
    return loaded


class MemoryEventStore:
    """Like the PostgreSQL store, positions and timestamps are taken at append time (so a
    rolled-back unit of work leaves a gap in positions), and a unit of work reads its own
    uncommitted appends and snapshots."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        # stream -> (committed version the appends build on, the appended events)
        self._staged: dict[str, tuple[int, list[RecordedEvent]]] = {}
        self._snapshots: list[Snapshot] = []

    def _stream(self, stream_id: str) -> list[RecordedEvent]:
        committed = self._db.streams.get(stream_id, [])
        if stream_id not in self._staged:
            return committed
        base, staged = self._staged[stream_id]
        return committed[:base] + staged

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> int:
        if not events:
            return expected_version
        committed = len(self._db.streams.get(stream_id, []))
        base, staged = self._staged.get(stream_id, (committed, []))
        if expected_version != base + len(staged):
            raise ConcurrencyError(f"stream {stream_id!r} is not at version {expected_version}")
        known = {e.event_id for es in self._db.streams.values() for e in es}
        known |= {e.event_id for _, es in self._staged.values() for e in es}
        if any(e.event_id in known for e in events):
            raise DuplicateEventError(f"an event of {stream_id!r} is already stored")
        now = self._db.clock = max(datetime.now(UTC), self._db.clock + timedelta(microseconds=1))
        recorded = [
            RecordedEvent(
                stream_id,
                n,
                next(self._db.positions),
                e.event_id,
                e.type,
                e.version,
                _json(e.payload),
                _json(e.metadata),
                now,
            )
            for n, e in enumerate(events, start=expected_version + 1)
        ]
        self._staged[stream_id] = (base, [*staged, *recorded])
        return expected_version + len(events)

    async def load(
        self,
        stream_id: str,
        *,
        after_version: int = 0,
        up_to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[RecordedEvent]:
        return [
            e
            for e in self._stream(stream_id)
            if e.stream_version > after_version
            and (up_to_version is None or e.stream_version <= up_to_version)
            and (as_of is None or e.recorded_at <= as_of)
        ]

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshots.append(dataclasses.replace(snapshot, state=_json(snapshot.state)))

    async def latest_snapshot(
        self, stream_id: str, *, up_to_version: int | None = None
    ) -> Snapshot | None:
        found = [
            s
            for s in [*self._db.snapshots.get(stream_id, []), *self._snapshots]
            if s.stream_id == stream_id
            and (up_to_version is None or s.stream_version <= up_to_version)
        ]
        # max() keeps the first of equal versions; the reversed list makes a snapshot staged
        # later win, as the PostgreSQL upsert does.
        return max(reversed(found), key=lambda s: s.stream_version, default=None)

    def _check(self) -> None:
        for stream_id, (base, _) in self._staged.items():
            if len(self._db.streams.get(stream_id, [])) != base:
                raise ConcurrencyError(f"stream {stream_id!r} moved past version {base}")

    def _apply(self) -> None:
        for stream_id, (_, staged) in self._staged.items():
            self._db.streams.setdefault(stream_id, []).extend(staged)
        for s in self._snapshots:
            kept = [
                x
                for x in self._db.snapshots.get(s.stream_id, [])
                if x.stream_version != s.stream_version
            ]
            self._db.snapshots[s.stream_id] = [*kept, s]


class MemoryOutbox:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self.staged: list[tuple[str, Envelope]] = []

    async def append(self, topic: str, envelope: Envelope) -> None:
        self.staged.append((topic, envelope))


class MemoryInbox:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self.staged: dict[InboxKey, str] = {}

    async def claim(
        self, consumer: str, event_id: uuid.UUID, *, scope: str, fingerprint: str
    ) -> Claim:
        key = (consumer, scope, event_id)
        first = self._db.inbox.get(key, self.staged.get(key))
        if first is None:
            self.staged[key] = fingerprint
            return Claim.NEW
        return Claim.DUPLICATE if first == fingerprint else Claim.COLLISION

    async def claim_many(self, consumer: str, messages: Sequence[InboxEntry]) -> list[Claim]:
        return [
            await self.claim(consumer, m.event_id, scope=m.scope, fingerprint=m.fingerprint)
            for m in messages
        ]


class MemoryUnitOfWork:
    events: MemoryEventStore
    outbox: MemoryOutbox
    inbox: MemoryInbox

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        self.events = MemoryEventStore(self.db)
        self.outbox = MemoryOutbox(self.db)
        self.inbox = MemoryInbox(self.db)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            return
        # Check everything, then apply everything, with no await in between: the commit is
        # atomic with respect to every other unit of work on the event loop.
        self.events._check()
        if self.inbox.staged.keys() & self.db.inbox.keys():
            raise ConcurrencyError("inbox key claimed by a concurrent unit of work")
        self.events._apply()
        self.db.outbox.extend(self.outbox.staged)
        self.db.inbox.update(self.inbox.staged)
