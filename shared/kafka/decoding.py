"""From a Kafka record to work for a handler, something to skip, or a dead letter.

Pure (no I/O): every record gets exactly one of the three outcomes, so a partition always
moves on. Only one thing is skipped quietly: a type our registry knows, on an event topic, that
this consumer does not handle (events have any number of handlers; this is not one of them).
Everything else nobody can handle is a dead letter with its reason, never a silent drop: a type
no registry knows (a typo such as `StockRecieved`), a `type` header that disagrees with the body,
and any type on a command topic without a handler here (a command has exactly one handler).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

import schemas  # noqa: F401  (every model and upcaster registered before anything decodes)
from schemas.catalogue import is_command_topic
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
    type: str  # a registered type no subscription of this consumer names


@dataclass(frozen=True)
class Rejected:
    record: Any
    reason: Reason
    error: str


Outcome = Work[U] | Ignored | Rejected


@dataclass(frozen=True)
class Routes(Generic[U]):
    table: Mapping[tuple[str, str], Subscription[U]]
    command_topics: frozenset[str]


def routes(subscriptions: list[Subscription[U]]) -> Routes[U]:
    """One subscription per (topic, type); each names the newest version of its message."""
    table: dict[tuple[str, str], Subscription[U]] = {}
    for sub in subscriptions:
        key = (sub.topic, sub.message.TYPE)
        if key in table:
            raise ValueError(f"two subscriptions for {sub.message.TYPE} on {sub.topic}")
        if REGISTRY.latest_version(sub.message.TYPE) != sub.message.VERSION:
            raise ValueError(f"subscribe to the newest version of {sub.message.TYPE}")
        table[key] = sub
    commands = frozenset(s.topic for s in subscriptions if is_command_topic(s.topic))
    return Routes(table, commands)


def _header(record: Any, name: str) -> str | None:
    for k, v in record.headers:
        if k == name and v is not None:  # Kafka allows a header without a value
            return bytes(v).decode(errors="replace")
    return None


def _unhandled(record: Any, type_: str, routes: Routes[U]) -> Outcome[U]:
    if not REGISTRY.knows(type_):
        return Rejected(record, Reason.UNKNOWN_TYPE, f"no message type {type_[:200]!r} is known")
    if record.topic in routes.command_topics:
        error = f"{type_} is not a command this consumer handles on {record.topic}"
        return Rejected(record, Reason.UNHANDLED_COMMAND, error)
    return Ignored(record, type_)


def route(record: Any, routes: Routes[U]) -> Outcome[U]:
    hinted = _header(record, "type")
    try:
        envelope = Envelope.from_bytes(record.value)
    except InvalidEnvelopeError as exc:
        return Rejected(record, Reason.INVALID_ENVELOPE, str(exc))
    if hinted is not None and hinted != envelope.type:
        # routing and tracing trust the header: a record that says two things is refused
        error = f"type header {hinted[:200]!r} disagrees with the body's {envelope.type!r}"
        return Rejected(record, Reason.TYPE_MISMATCH, error)
    subscription = routes.table.get((record.topic, envelope.type))
    if subscription is None:
        return _unhandled(record, envelope.type, routes)
    try:
        message = envelope.decode()
    except UnknownMessageError as exc:
        return Rejected(record, Reason.UNKNOWN_VERSION, str(exc))
    except ValidationError as exc:
        return Rejected(record, Reason.SCHEMA_VIOLATION, str(exc))
    except Exception as exc:  # an upcaster tripping over a payload its version accepted
        return Rejected(record, Reason.SCHEMA_VIOLATION, f"upcasting failed: {exc!r}")
    return Work(record, envelope, message, subscription)
