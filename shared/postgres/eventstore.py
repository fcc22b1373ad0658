"""Event store on PostgreSQL: one row per event, primary key (stream_id, stream_version).

Concurrency control is the primary key itself: two writers that read the same version both try
to insert the next one and exactly one wins; the loser gets ConcurrencyError. No table lock, so
appends to different streams never wait for each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from shared.ports import ConcurrencyError, DuplicateEventError, NewEvent, RecordedEvent, Snapshot
from shared.postgres.types import Connection

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position       bigint GENERATED ALWAYS AS IDENTITY,
    stream_id      text        NOT NULL,
    stream_version integer     NOT NULL CHECK (stream_version > 0),
    event_id       uuid        NOT NULL UNIQUE,
    type           text        NOT NULL,
    version        integer     NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (stream_id, stream_version)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_position ON events (position);
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id      text        NOT NULL,
    stream_version integer     NOT NULL,
    schema_version integer     NOT NULL,
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, stream_version)
);
"""

# One statement: the guard refuses an expected version ahead of the stream (a gap), the
# primary key refuses one behind it (a concurrent writer got there first).
# recorded_at is clock_timestamp(), not now(): now() is the transaction's start, so a writer that
# began before the previous append committed would stamp version N+1 earlier than N, and a load
# "as of" a time between them would see a stream with a hole. Appending N+1 needs N committed,
# so clock_timestamp() rises with the version.
_APPEND = """
INSERT INTO events
    (stream_id, stream_version, event_id, type, version, payload, metadata, recorded_at)
SELECT $1, $2::int + e.n, e.event_id, e.type, e.version, e.payload::jsonb, e.metadata::jsonb,
       clock_timestamp()
FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[])
     WITH ORDINALITY AS e(event_id, type, version, payload, metadata, n)
WHERE $2::int = 0
   OR EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND stream_version = $2::int)
ORDER BY e.n
"""

_COLUMNS = "stream_id, stream_version, position, event_id, type, version, payload, metadata, "
_COLUMNS += "recorded_at"


def _dumps(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        position=row["position"],
        event_id=row["event_id"],
        type=row["type"],
        version=row["version"],
        payload=orjson.loads(row["payload"]),
        metadata=orjson.loads(row["metadata"]),
        recorded_at=row["recorded_at"],
    )


class PostgresEventStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> int:
        if not events:
            return expected_version
        try:
            status = await self._conn.execute(
                _APPEND,
                stream_id,
                expected_version,
                [e.event_id for e in events],
                [e.type for e in events],
                [e.version for e in events],
                [_dumps(e.payload) for e in events],
                [_dumps(e.metadata) for e in events],
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_event_id_key":
                raise DuplicateEventError(f"an event of {stream_id!r} is already stored") from None
            raise ConcurrencyError(
                f"stream {stream_id!r} moved past version {expected_version}"
            ) from None
        if status != f"INSERT 0 {len(events)}":
            raise ConcurrencyError(f"stream {stream_id!r} is not at version {expected_version}")
        return expected_version + len(events)

    async def load(
        self,
        stream_id: str,
        *,
        after_version: int = 0,
        up_to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[RecordedEvent]:
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2"
            " AND ($3::int IS NULL OR stream_version <= $3)"
            " AND ($4::timestamptz IS NULL OR recorded_at <= $4)"
            " ORDER BY stream_version",
            stream_id,
            after_version,
            up_to_version,
            as_of,
        )
        return [_recorded(r) for r in rows]

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self._conn.execute(
            "INSERT INTO snapshots (stream_id, stream_version, schema_version, state, taken_at)"
            " VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (stream_id, stream_version)"
            " DO UPDATE SET schema_version = EXCLUDED.schema_version, state = EXCLUDED.state,"
            " taken_at = EXCLUDED.taken_at",
            snapshot.stream_id,
            snapshot.stream_version,
            snapshot.schema_version,
            _dumps(snapshot.state),
            snapshot.taken_at,
        )

    async def latest_snapshot(
        self, stream_id: str, *, up_to_version: int | None = None
    ) -> Snapshot | None:
        row = await self._conn.fetchrow(
            "SELECT stream_id, stream_version, schema_version, state, taken_at FROM snapshots"
            " WHERE stream_id = $1 AND ($2::int IS NULL OR stream_version <= $2)"
            " ORDER BY stream_version DESC LIMIT 1",
            stream_id,
            up_to_version,
        )
        if row is None:
            return None
        return Snapshot(
            stream_id=row["stream_id"],
            stream_version=row["stream_version"],
            schema_version=row["schema_version"],
            state=orjson.loads(row["state"]),
            taken_at=row["taken_at"],
        )
