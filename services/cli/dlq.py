"""Dead letters for an operator: found by topic, reason and time, shown one by one, re-driven.

A dead letter is named `<dead-letter topic>:<partition>:<offset>` (catalogue names), which
stays true for as long as the topic keeps it. Re-driving re-produces exactly the letters the
operator was shown, nothing that arrived since, to their origin topics with their original key,
value and headers (`shared.kafka.dead_letters` says what a dead letter holds). It keeps no
record of what it re-drove: `python -m shared.kafka.dead_letters redrive` is the tool that
works through a whole dead-letter topic once, under a tracking consumer group.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from schemas.catalogue import DEAD_LETTER_SUFFIX
from services.cli import kafka
from services.cli.errors import USAGE, CliError
from services.cli.events import Seen
from services.cli.settings import CliSettings
from shared.kafka.dead_letters import DeadLetter, dead_letter_topic
from shared.kafka.producer import DeliveryError, OutgoingMessage, Producer


@dataclass(frozen=True)
class Letter:
    id: str
    letter: DeadLetter
    seen: Seen  # the original record, decoded
    at: datetime  # when it failed (the dead letter's own time if it does not say)

    def origin(self, settings: CliSettings) -> str:
        """Where the record was: `topic:partition:offset`, the topic by its catalogue name."""
        d = self.letter
        return f"{settings.logical(d.origin_topic)}:{d.origin_partition}:{d.origin_offset}"

    def as_json(self, settings: CliSettings) -> dict[str, Any]:
        d = self.letter
        return {
            "id": self.id,
            "reason": d.reason,
            "error": d.error,
            "consumer": d.consumer,
            "failed_at": self.at.isoformat(),
            "origin": {
                "topic": settings.logical(d.origin_topic),
                "partition": d.origin_partition,
                "offset": d.origin_offset,
            },
            "event_id": d.event_id,
            "record": self.seen.as_json(),
        }


@dataclass(frozen=True)
class Filters:
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keep(self, letter: Letter) -> bool:
        return (
            (self.reason is None or letter.letter.reason == self.reason)
            and (self.since is None or letter.at >= self.since)
            and (self.until is None or letter.at < self.until)
        )


_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def when(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a span back from now: 30m, 2h, 1d."""
    if ago := _AGO.match(text.strip()):
        span = timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
        return (now or datetime.now(UTC)) - span
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time nor a span like 30m, 2h, 1d"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def letter_of(record: Any, settings: CliSettings) -> Letter:
    topic = settings.logical(record.topic)
    letter = DeadLetter.from_record(record)
    seen = Seen.of(record, topic)
    return Letter(
        f"{topic}:{record.partition}:{record.offset}",
        letter,
        seen,
        letter.failed_at or seen.timestamp,
    )


async def topics(settings: CliSettings, topic: str | None) -> list[str]:
    """The physical dead-letter topics to look at: `topic`'s (its own name or its dead-letter
    topic's), else the catalogue's."""
    if topic is not None:
        name = topic if topic.endswith(DEAD_LETTER_SUFFIX) else dead_letter_topic(topic)
        return [settings.topic(name)]
    return await kafka.catalogue(settings, topics=False)


async def listed(
    settings: CliSettings, topic: str | None, filters: Filters, limit: int
) -> list[Letter]:
    """The first `limit` letters the filters keep, oldest first within each topic partition."""
    found: list[Letter] = []
    physical = await topics(settings, topic)
    if not physical:
        return found
    stream = kafka.records(
        settings.kafka_bootstrap_servers, physical, security=settings.kafka_security
    )
    async with contextlib.aclosing(stream):
        async for record in stream:
            letter = letter_of(record, settings)
            if filters.keep(letter):
                found.append(letter)
                if len(found) >= limit:
                    break
    return found


def parse_id(text: str) -> tuple[str, int, int]:
    topic, _, rest = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not (topic.endswith(DEAD_LETTER_SUFFIX) and partition.isdigit() and rest.isdigit()):
        raise CliError(
            f"{text!r} is not a dead letter id (<topic>.dlq:<partition>:<offset>)", USAGE
        )
    return topic, int(partition), int(rest)


async def found(settings: CliSettings, letter_id: str) -> Letter:
    topic, partition, offset = parse_id(letter_id)
    record = await kafka.record_at(
        settings.kafka_bootstrap_servers,
        settings.topic(topic),
        partition,
        offset,
        security=settings.kafka_security,
    )
    if record is None:
        raise CliError(f"no dead letter {letter_id} (never written, or past its retention)")
    return letter_of(record, settings)


async def chosen(
    settings: CliSettings, ids: list[str], topic: str | None, filters: Filters, limit: int
) -> list[Letter]:
    """The letters named by id, else those `listed` finds."""
    if ids:
        return [await found(settings, i) for i in ids]
    return await listed(settings, topic, filters, limit)


async def redrive(settings: CliSettings, letters: list[Letter]) -> None:
    """Each letter's original record onto its origin topic: all acknowledged, or an error
    saying how many were (those are on their topics; re-driving them again is harmless, as
    consumers drop an event id they applied)."""
    bootstrap = settings.kafka_bootstrap_servers
    producer = Producer(
        bootstrap, client_id="leadline-cli.redrive", security=settings.kafka_security
    )
    out = [
        # a None key stays None (aiokafka sends "no key"); OutgoingMessage types only bytes
        OutgoingMessage(d.origin_topic, cast(bytes, d.key), d.value, d.headers)
        for d in (letter.letter for letter in letters)
    ]
    try:
        await producer.send_all(out)
    except DeliveryError as exc:
        raise CliError(
            f"re-drive stopped: {exc.delivered} of {len(out)} re-produced ({exc.cause!r})"
        ) from None
    finally:
        await producer.stop()
