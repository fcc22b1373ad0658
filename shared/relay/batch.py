"""One relay batch: select unsent outbox rows, publish them in id order, mark the delivered.

Rows are selected as "not yet sent", never "id above the last one sent": ids are handed out at
insert but become visible at commit, so a transaction that commits late leaves a row below any
high-water mark, and the mark would skip it for good.

Only the acknowledged prefix of a batch is marked. Everything after the first undelivered row is
selected again by the next batch, so a row is published at least once and a key's rows reach
Kafka first in id order; a crash between publishing and marking re-publishes (a duplicate,
which consumers drop by event_id), never loses.

A row Kafka refuses for good would fail every batch for ever, so it is parked (parking.py)
instead: the select then holds back the other unsent rows of its topic and key, and the rows
after it of every other key go out with the next batch. Only answers retrying cannot change
park a row; anything else (the broker away, a timeout, a leader election) fails the batch as
before, and the relay retries the same rows. Order is kept per topic and key, so leaving all of
one key's rows, or all of one topic's, out of a send reorders nothing.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
import orjson
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from shared.kafka.producer import DeliveryError, OutgoingMessage, Producer
from shared.kafka.tracing import DeferredSends
from shared.observability.logging import get_logger
from shared.observability.metrics import OUTBOX_PUBLISHED
from shared.postgres.outbox import PARKED, PENDING
from shared.relay.topics import TopicCheck

DB_TIMEOUT = 30.0  # seconds; a hung connection must surface as an error, not a stuck relay

_SELECT = f"""
SELECT id, topic, key, value, headers FROM outbox o
WHERE {PENDING}
  AND NOT EXISTS (SELECT FROM outbox p WHERE p.topic = o.topic AND p.key = o.key AND {PARKED})
ORDER BY id LIMIT $1
"""
_MARK = "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])"
_PARK = (
    "UPDATE outbox SET parked_at = now(), parked_reason = $2"
    f" WHERE id = ANY($1::bigint[]) AND {PENDING} RETURNING id, topic, key"
)
_BACKLOG = f"SELECT count(*) FROM outbox WHERE {PENDING}"

# over the producer's max_request_size (raised by send() itself) or a topic's
# max.message.bytes (answered by the broker); a topic Kafka takes no records for
_REFUSALS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
)

_log = get_logger(__name__)


@dataclass(frozen=True)
class Batch:
    selected: int
    published: int  # delivered and marked
    parked: int

    def more(self, limit: int) -> bool:
        """Whether another batch right away may publish more: this one made progress, and it
        was full or left rows behind (those after a parked row, or after one sent alone)."""
        settled = self.published + self.parked
        return settled > 0 and (self.selected == limit or settled < self.selected)


def refusal(cause: BaseException) -> str | None:
    """Why Kafka refuses a record for good, or None when retrying may still deliver it."""
    if not isinstance(cause, _REFUSALS):
        return None
    # the client's own checks say why; the broker's answers carry only their error code
    detail = cause.args[0] if cause.args else "answered by the broker"
    return f"{type(cause).__name__}: {detail}"


def _message(row: asyncpg.Record, sends: DeferredSends) -> OutgoingMessage:
    headers = [(name, value.encode()) for name, value in orjson.loads(row["headers"])]
    headers = sends.start(row["topic"], row["key"], headers)
    return OutgoingMessage(row["topic"], row["key"].encode(), row["value"], headers)


async def publish_batch(
    pool: asyncpg.Pool, producer: Producer, topics: TopicCheck, limit: int, *, relay: str
) -> Batch:
    """Publish up to `limit` unsent rows that no parked row holds back, in id order; park the
    rows Kafka refuses for good. Raises DeliveryError, after marking the acknowledged prefix,
    when a send failed for a reason retrying may fix."""
    rows = await pool.fetch(_SELECT, limit, timeout=DB_TIMEOUT)
    if not rows:
        return Batch(0, 0, 0)
    # a topic that cannot take records is left out whole; its rows are parked, the first of
    # each key, once the refusal is final (the select holds back the others)
    verdicts = await topics.verdicts({r["topic"] for r in rows})
    parked = 0
    for topic, reason in verdicts.items():
        if reason is not None:
            parked += await _park(pool, _first_of_each_key(rows, topic), reason, relay)
    sendable = [r for r in rows if r["topic"] not in verdicts]
    delivered, failure = await _send(producer, sendable)
    published = await _mark(pool, sendable[:delivered], relay)
    if failure is None:
        return Batch(len(rows), published, parked)

    suspect = sendable[delivered]
    reason = refusal(failure.cause)
    if reason is not None and len(sendable) > 1:
        # a size limit refuses a whole produce batch: the row may only have shared it with
        # others, so it is tried alone before it is judged
        alone, retried = await _send(producer, [suspect])
        published += await _mark(pool, [suspect][:alone], relay)
        if retried is None:
            return Batch(len(rows), published, parked)
        failure, reason = retried, refusal(retried.cause)
    if reason is None:
        if isinstance(failure.cause, UnknownTopicOrPartitionError):
            topics.forget(suspect["topic"])  # deleted since it was seen: ask the broker again
        raise failure
    parked += await _park(pool, [suspect], reason, relay)
    return Batch(len(rows), published, parked)


async def backlog(pool: asyncpg.Pool) -> int:
    """Rows waiting to be published, those held behind a parked row included."""
    count: int = await pool.fetchval(_BACKLOG, timeout=DB_TIMEOUT)
    return count


def _first_of_each_key(rows: Iterable[asyncpg.Record], topic: str) -> list[asyncpg.Record]:
    first: dict[str, asyncpg.Record] = {}
    for r in rows:
        if r["topic"] == topic:
            first.setdefault(r["key"], r)
    return list(first.values())


async def _send(
    producer: Producer, rows: Sequence[asyncpg.Record]
) -> tuple[int, DeliveryError | None]:
    """How many leading rows were acknowledged, and why the next one was not."""
    if not rows:
        return 0, None
    sends = DeferredSends()  # a span per row, in the trace that wrote it (kafka/tracing.py)
    delivered = 0
    failure: DeliveryError | None = None
    try:
        await producer.send_all([_message(r, sends) for r in rows])
        delivered = len(rows)
    except DeliveryError as exc:
        delivered, failure = exc.delivered, exc
    finally:
        sends.end(delivered, failure)
    return delivered, failure


async def _mark(pool: asyncpg.Pool, rows: Sequence[asyncpg.Record], relay: str) -> int:
    if rows:
        await pool.execute(_MARK, [r["id"] for r in rows], timeout=DB_TIMEOUT)
        for topic, count in collections.Counter(r["topic"] for r in rows).items():
            OUTBOX_PUBLISHED.labels(relay=relay, topic=topic).inc(count)
    return len(rows)


async def _park(pool: asyncpg.Pool, rows: Sequence[asyncpg.Record], reason: str, relay: str) -> int:
    parked = await pool.fetch(_PARK, [r["id"] for r in rows], reason, timeout=DB_TIMEOUT)
    for r in parked:
        _log.warning(
            "outbox row parked: its key's later rows wait until it is retried or dropped",
            relay=relay,
            id=r["id"],
            topic=r["topic"],
            key=r["key"],
            reason=reason,
        )
    return len(parked)
