"""What the console reads for a page, each part on its own and under a deadline: a part that is
down (Kafka, one service's database) becomes a `Problem` shown where its numbers would be, and
the rest of the page still renders.

The reading itself is the CLI's (`services.cli.kafka`, `sagas`, `dlq`); only the outbox backlog
is new here. It counts with the outbox's own predicates (`PENDING`, `PARKED` from
`shared.postgres.outbox`), which its partial indexes serve, so a look at a large outbox stays
cheap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg

from schemas.catalogue import DEAD_LETTER_SUFFIX
from services.cli import kafka, sagas
from services.cli.errors import (
    NOT_FOUND,
    UNREACHABLE,
    USAGE,
    brief,
    explained,
    postgres_unreachable,
    redact,
)
from services.cli.settings import CliSettings, Part
from shared.postgres.outbox import PARKED, PENDING

T = TypeVar("T")
log = logging.getLogger(__name__)

# the CLI's exit statuses (services.cli.errors) as the status of a page that shows one part
HTTP_STATUS = {NOT_FOUND: 404, USAGE: 400, UNREACHABLE: 503}


@dataclass(frozen=True)
class Problem:
    message: str
    status: int  # the HTTP status of a page that shows this part alone


def budget(settings: CliSettings) -> float:
    """Seconds one part of a page may take: a few round trips of LEADLINE_TIMEOUT each."""
    return settings.timeout * 4


async def attempt(work: Awaitable[T], settings: CliSettings, what: str) -> T | Problem:
    """`work`'s answer, or the Problem that stopped it. An error that is not Kafka's or
    PostgreSQL's is a bug: logged with its traceback, and still only this part's message."""
    deadline = asyncio.timeout(budget(settings))
    try:
        async with deadline:
            return await work
    except Exception as exc:
        if deadline.expired():
            return Problem(f"{what}: no answer within {budget(settings):g} s", 503)
        error = explained(exc, bootstrap=settings.kafka_bootstrap_servers)
        if error is None:
            log.exception("console: reading %s failed", what)
            return Problem(f"{what}: unexpected error {brief(exc)}", 500)
        return Problem(str(error), HTTP_STATUS.get(error.status, 503))


def status_of(*found: object) -> int:
    """200, or the status of the first Problem among `found`."""
    return next((f.status for f in found if isinstance(f, Problem)), 200)


@dataclass(frozen=True)
class GroupLag:
    group: str
    lag: dict[str, int]  # catalogue topic -> records the group has still to read

    @property
    def total(self) -> int:
        return sum(self.lag.values())


@dataclass(frozen=True)
class KafkaView:
    topics: int  # catalogue topics (dead-letter topics included) the broker has
    groups: list[GroupLag]
    dead_letters: dict[str, int]  # dead-letter topic (catalogue name) -> records kept


async def kafka_view(settings: CliSettings) -> KafkaView:
    physical = await kafka.catalogue(settings)
    if not physical:
        return KafkaView(0, [], {})
    found = await kafka.topic_offsets(settings, physical)
    lags: dict[str, dict[str, int]] = {}
    for t in found:
        for g in t.groups:
            lags.setdefault(g.group, {})[t.topic] = g.total
    return KafkaView(
        len(found),
        [GroupLag(group, lag) for group, lag in sorted(lags.items())],
        {t.topic: t.records for t in found if t.topic.endswith(DEAD_LETTER_SUFFIX)},
    )


@dataclass(frozen=True)
class Backlog:
    pending: int | None  # waiting for the relay; None: this database has no outbox
    parked: int = 0  # refused by Kafka for good, waiting for an operator
    oldest: datetime | None = None  # the oldest pending row's creation


async def backlog(part: Part, timeout: float) -> Backlog:
    try:
        conn = await asyncpg.connect(part.database_url, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise postgres_unreachable(part.database_url, exc) from None
    try:
        pending, oldest = await conn.fetchrow(
            f"SELECT count(*), min(created_at) FROM outbox WHERE {PENDING}"
        ) or (0, None)
        parked = await conn.fetchval(f"SELECT count(*) FROM outbox WHERE {PARKED}")
    except asyncpg.UndefinedTableError:
        return Backlog(None)
    finally:
        await conn.close()
    return Backlog(pending, parked, oldest)


@dataclass(frozen=True)
class Outbox:
    service: str
    database: str  # without its password
    found: Backlog | Problem


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int] | Problem  # sagas by status
    kafka: KafkaView | Problem
    outboxes: list[Outbox]


async def _saga_counts(dsn: str) -> dict[str, int]:
    counts, _ = await sagas.listed(dsn, None, 1)
    return counts


async def overview(settings: CliSettings) -> Overview:
    """Every part at once, so the slowest bounds the page, not their sum."""
    parts = settings.parts()

    async def outbox(part: Part) -> Outbox:
        found = await attempt(
            backlog(part, settings.timeout), settings, f"the {part.name} database"
        )
        return Outbox(part.name, redact(part.database_url), found)

    counts, view, outboxes = await asyncio.gather(
        attempt(_saga_counts(settings.orchestrator_database_url), settings, "the saga view"),
        attempt(kafka_view(settings), settings, f"Kafka at {settings.kafka_bootstrap_servers}"),
        asyncio.gather(*(outbox(p) for p in parts)),
    )
    return Overview(counts, view, list(outboxes))
