"""From a Kafka record to work for a handler, something to skip, or a dead letter.

Pure (no I/O): every record gets exactly one of the three outcomes, so a partition always
moves on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

import schemas  # noqa: F401  (every model and upcaster registered before anything decodes)
from schemas.registry import REGISTRY, Message, UnknownMessageError
from shared.envelope import Envelope, InvalidEnvelopeError
from shared.kafka.dead_letters import Reason

U = TypeVar("U")


@dataclass(frozen=True)
class Subscription(Generic[U]):
    """Records on `topic` whose envelope type is `message.TYPE` go to `handler`, as the newest
    version of `message` (older versions are upcast), inside an open unit of work."""

    topic: str
    message: type[Message]
    handler: Callable[[Envelope, Any, U], Awaitable[None]]


@dataclass(frozen=True)
class Work(Generic[U]):
    record: Any
    envelope: Envelope
    message: Message
    subscription: Subscription[U]


@dataclass(frozen=True)
class Ignored:
    record: Any
    type: str  # the type no subscription names ("" when unknown)


@dataclass(frozen=True)
class Rejected:
    record: Any
    reason: Reason
    error: str


Outcome = Work[U] | Ignored | Rejected
Routes = Mapping[tuple[str, str], Subscription[U]]


def routes(subscriptions: list[Subscription[U]]) -> dict[tuple[str, str], Subscription[U]]:
    """One subscription per (topic, type); each names the newest version of its message."""
    table: dict[tuple[str, str], Subscription[U]] = {}
    for sub in subscriptions:
        key = (sub.topic, sub.message.TYPE)
        if key in table:
            raise ValueError(f"two subscriptions for {sub.message.TYPE} on {sub.topic}")
        if REGISTRY.latest_version(sub.message.TYPE) != sub.message.VERSION:
            raise ValueError(f"subscribe to the newest version of {sub.message.TYPE}")
        table[key] = sub
    return table


def _header(record: Any, name: str) -> str | None:
    for k, v in record.headers:
        if k == name and v is not None:  # Kafka allows a header without a value
            return bytes(v).decode(errors="replace")
    return None


def route(record: Any, table: Routes[U]) -> Outcome[U]:
    # The type header lets a record nobody here subscribes to be skipped without parsing it.
    hinted = _header(record, "type")
    if hinted is not None and (record.topic, hinted) not in table:
        return Ignored(record, hinted)
    try:
        envelope = Envelope.from_bytes(record.value)
    except InvalidEnvelopeError as exc:
        return Rejected(record, Reason.INVALID_ENVELOPE, str(exc))
    subscription = table.get((record.topic, envelope.type))
    if subscription is None:
        return Ignored(record, envelope.type)
    try:
        message = envelope.decode()
    except UnknownMessageError as exc:
        return Rejected(record, Reason.UNKNOWN_VERSION, str(exc))
    except ValidationError as exc:
        return Rejected(record, Reason.SCHEMA_VIOLATION, str(exc))
    except Exception as exc:  # an upcaster tripping over a payload its version accepted
        return Rejected(record, Reason.SCHEMA_VIOLATION, f"upcasting failed: {exc!r}")
    return Work(record, envelope, message, subscription)
