"""Records on a topic as the CLI shows them: where each sits and its envelope, or why it has
none; and `events tail`, which reads them.

The `type` and `correlation_id` headers say what a record is without parsing its body (DESIGN
§3), so filters read them first; a record without them (a foreign producer's, garbage) is
judged by its envelope, if it has one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import schemas  # noqa: F401  (every message type registered: `known` below needs them)
from schemas.registry import REGISTRY
from services.cli import kafka
from services.cli.settings import CliSettings
from shared.envelope import Envelope, InvalidEnvelopeError


def header(record: Any, name: str) -> str | None:
    for k, v in record.headers:
        if k == name and v is not None:  # Kafka allows a header without a value
            return bytes(v).decode(errors="replace")
    return None


@dataclass(frozen=True)
class Seen:
    topic: str  # catalogue name
    partition: int
    offset: int
    timestamp: datetime  # the broker's (or producer's) record time
    key: str | None
    headers: dict[str, str]
    envelope: Envelope | None
    error: str | None  # why the value is not an envelope
    value: bytes | None  # as it is on the topic

    @classmethod
    def of(cls, record: Any, topic: str) -> Seen:
        try:
            envelope, error = Envelope.from_bytes(record.value), None
        except InvalidEnvelopeError as exc:
            envelope, error = None, str(exc).splitlines()[0]
        return cls(
            topic=topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            key=None if record.key is None else bytes(record.key).decode(errors="replace"),
            headers={
                k: bytes(v).decode(errors="replace") for k, v in record.headers if v is not None
            },
            envelope=envelope,
            error=error,
            value=record.value,
        )

    @property
    def type(self) -> str | None:
        return self.envelope.type if self.envelope else self.headers.get("type")

    @property
    def correlation_id(self) -> str | None:
        return self.envelope.correlation_id if self.envelope else self.headers.get("correlation_id")

    @property
    def known(self) -> bool:
        """Its type is one our schema registry has (a typo or a foreign type is not)."""
        return self.type is not None and REGISTRY.knows(self.type)

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat(),
            "key": self.key,
            "headers": self.headers,
            "envelope": self.envelope.model_dump(mode="json") if self.envelope else None,
            "error": self.error,
            # what an undecodable record holds, as far as it is text
            "value": None if self.envelope is not None or self.value is None else self.text,
        }

    @property
    def text(self) -> str:
        return "" if self.value is None else bytes(self.value).decode(errors="replace")


@dataclass(frozen=True)
class Only:
    """Which records to show: of one correlation id, of some types (None/empty: all)."""

    correlation: str | None = None
    types: frozenset[str] = frozenset()

    def may_want(self, record: Any) -> bool:
        """Worth decoding, judged by the headers alone: False only when a header rules the
        record out."""
        if self.correlation is not None and header(record, "correlation_id") not in (
            None,
            self.correlation,
        ):
            return False
        return not self.types or header(record, "type") in (None, *self.types)

    def wants(self, seen: Seen) -> bool:
        return (self.correlation is None or seen.correlation_id == self.correlation) and (
            not self.types or seen.type in self.types
        )


@dataclass(frozen=True)
class Reading:
    from_beginning: bool = False
    follow: bool = True
    limit: int | None = None


async def tail(
    settings: CliSettings,
    topic: str,
    only: Only,
    reading: Reading,
    *,
    ready: Callable[[int], None],
    emit: Callable[[Seen], None],
) -> int:
    """Decode the records of catalogue topic `topic` that `only` keeps and `emit` each; return
    how many. `ready` is told the partition count once reading stands where it starts."""
    shown = 0
    stream = kafka.records(
        settings.kafka_bootstrap_servers,
        [settings.topic(topic)],
        security=settings.kafka_security,
        from_beginning=reading.from_beginning,
        follow=reading.follow,
        ready=lambda start: ready(len(start)),
    )
    async with contextlib.aclosing(stream):
        async for record in stream:
            if not only.may_want(record):
                continue
            seen = Seen.of(record, topic)
            if only.wants(seen):
                emit(seen)
                shown += 1
                if reading.limit is not None and shown >= reading.limit:
                    break
    return shown
