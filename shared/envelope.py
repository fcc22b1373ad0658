"""The one envelope every Kafka record value carries (DESIGN §3).

`event_id` is the idempotency key. `type`, `version` and `correlation_id` are mirrored in Kafka
headers so routing and tracing never need to parse the body.

The envelope grows by adding optional fields (trace context is next), never by changing one: a
consumer deployed before a field existed keeps reading records that carry it, and carries the
field along when it re-serialises the envelope. Unknown fields are therefore allowed; the
payload, which has versions of its own, stays strict.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.registry import REGISTRY, Message, Registry

Headers = list[tuple[str, bytes]]


class InvalidEnvelopeError(ValueError):
    """The record is not a decodable envelope (bad JSON, missing or malformed fields)."""


class Envelope(BaseModel):
    # "allow", not "ignore": a record re-serialised by an older process keeps the newer fields
    model_config = ConfigDict(frozen=True, extra="allow")

    event_id: uuid.UUID = Field(description="unique per message; consumers deduplicate on it")
    type: str = Field(min_length=1, max_length=100)
    version: int = Field(ge=1, description="schema version of the payload")
    occurred_at: datetime
    producer: str = Field(min_length=1, max_length=100)
    key: str = Field(min_length=1, max_length=200, description="aggregate or saga id")
    correlation_id: str = Field(min_length=1, max_length=200, description="the order id")
    causation_id: uuid.UUID | None = Field(default=None, description="the message that caused it")
    stream_version: int | None = Field(
        default=None,
        ge=1,
        description="an event-sourced aggregate's version once this event is applied: the"
        " read side's consistency token (the ETag checkout answers with)",
    )
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        message: Message,
        *,
        key: str,
        producer: str,
        correlation_id: str | None = None,
        caused_by: Envelope | None = None,
        event_id: uuid.UUID | None = None,
        registry: Registry = REGISTRY,
    ) -> Envelope:
        """Envelope a payload, carrying correlation and causation from the message that caused
        it. Pass a deterministic `event_id` when a retry must produce the very same message."""
        type_, version, payload = registry.encode(message)
        if correlation_id is None:
            correlation_id = caused_by.correlation_id if caused_by else key
        return cls(
            event_id=event_id or uuid.uuid4(),
            type=type_,
            version=version,
            occurred_at=datetime.now(UTC),
            producer=producer,
            key=key,
            correlation_id=correlation_id,
            causation_id=caused_by.event_id if caused_by else None,
            payload=payload,
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, value: bytes | None) -> Envelope:
        if value is None:
            raise InvalidEnvelopeError("record has no value")
        try:
            return cls.model_validate(orjson.loads(value))
        except orjson.JSONDecodeError as exc:
            raise InvalidEnvelopeError(f"value is not JSON: {exc}") from None
        except ValidationError as exc:
            raise InvalidEnvelopeError(f"not an envelope: {exc}") from None

    def headers(self) -> Headers:
        return [
            ("event_id", str(self.event_id).encode()),
            ("type", self.type.encode()),
            ("version", str(self.version).encode()),
            ("correlation_id", self.correlation_id.encode()),
        ]

    def decode(self, registry: Registry = REGISTRY) -> Message:
        """The payload as the newest version of its model (upcast when older)."""
        return registry.decode(self.type, self.version, self.payload)


def deterministic_id(*parts: str) -> uuid.UUID:
    """A stable id from its parts (saga id + step, order id + event…): re-sends dedupe."""
    # "|" cannot occur in ids (schemas.fields.Id), so distinct part lists never join alike
    return uuid.uuid5(uuid.NAMESPACE_URL, "leadline|" + "|".join(parts))
