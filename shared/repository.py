"""Loading and saving event-sourced aggregates through a unit of work's event store.

The stream id is the aggregate id. Stored events are decoded through the registry, so an event
written under an old schema version is upcast to the newest before the aggregate sees it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from schemas.registry import REGISTRY, Message, Registry
from shared.aggregate import Aggregate
from shared.ports import EventStore, NewEvent, RecordedEvent, Snapshot

A = TypeVar("A", bound=Aggregate)


class NotFound(LookupError):
    """No event in the stream (at that version or time)."""


class EventSourcedRepository(Generic[A]):
    def __init__(
        self,
        aggregate_type: type[A],
        events: EventStore,
        *,
        snapshot_every: int = 50,
        registry: Registry = REGISTRY,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self._type = aggregate_type
        self._events = events
        self._every = snapshot_every
        self._registry = registry

    async def load(
        self, id: str, *, up_to_version: int | None = None, as_of: datetime | None = None
    ) -> A:
        """The aggregate from its latest usable snapshot plus the events after it; with
        `up_to_version` or `as_of` (recorded at or before), as it stood then. Raises NotFound."""
        snapshot = await self._snapshot(id, up_to_version)
        if snapshot is not None:
            tail = await self._events.load(
                id,
                after_version=snapshot.stream_version - 1,
                up_to_version=up_to_version,
                as_of=as_of,
            )
            # The snapshot's own last event comes back first only if it was recorded by
            # `as_of`; otherwise the snapshot knows more than we knew then: replay instead.
            if tail and tail[0].stream_version == snapshot.stream_version:
                aggregate = self._type.from_snapshot(id, snapshot.stream_version, snapshot.state)
                aggregate.replay(self._decode(e) for e in tail[1:])
                return aggregate
        history = await self._events.load(id, up_to_version=up_to_version, as_of=as_of)
        if not history:
            raise NotFound(f"no stream {id!r}")
        return self._type.from_history(id, (self._decode(e) for e in history))

    async def save(
        self,
        aggregate: A,
        *,
        metadata: Mapping[str, Any] | None = None,
        event_ids: Sequence[uuid.UUID] | None = None,
    ) -> int:
        """Append the pending events after the version the aggregate was loaded at, plus a
        snapshot whenever a multiple of `snapshot_every` is crossed; return the new version.

        Pass `event_ids` (one per pending event) when a retried command must record the very
        same events; otherwise each gets a fresh uuid4. Raises ConcurrencyError when the
        stream has moved on since the aggregate was loaded."""
        pending = aggregate.pending
        expected = aggregate.version - len(pending)
        if not pending:
            return aggregate.version
        ids = list(event_ids) if event_ids is not None else [uuid.uuid4() for _ in pending]
        if len(ids) != len(pending):
            raise ValueError(f"{len(ids)} event ids for {len(pending)} pending events")
        meta = dict(metadata or {})
        new = [
            NewEvent(eid, *self._registry.encode(e), meta)
            for eid, e in zip(ids, pending, strict=True)
        ]
        version = await self._events.append(aggregate.id, expected, new)
        schema = self._type.SNAPSHOT_SCHEMA_VERSION
        if schema is not None and version // self._every > expected // self._every:
            await self._events.save_snapshot(
                Snapshot(aggregate.id, version, schema, aggregate.snapshot_state(), _now())
            )
        aggregate.mark_committed()
        return version

    async def _snapshot(self, id: str, up_to_version: int | None) -> Snapshot | None:
        schema = self._type.SNAPSHOT_SCHEMA_VERSION
        if schema is None:
            return None
        snapshot = await self._events.latest_snapshot(id, up_to_version=up_to_version)
        if snapshot is None or snapshot.schema_version != schema:
            return None
        return snapshot

    def _decode(self, event: RecordedEvent) -> Message:
        return self._registry.decode(event.type, event.version, event.payload)


def _now() -> datetime:
    return datetime.now(UTC)
