"""One relay batch: select unsent outbox rows, publish them in id order, mark the delivered.

Rows are selected as "not yet sent", never "id above the last one sent": ids are handed out at
insert but become visible at commit, so a transaction that commits late leaves a row below any
high-water mark, and the mark would skip it for good.

Only the acknowledged prefix of a batch is marked. Everything after the first undelivered row is
selected again by the next batch, so a row is published at least once and a key's rows reach
Kafka first in id order; a crash between publishing and marking re-publishes (a duplicate,
which consumers drop by event_id), never loses.
"""

from __future__ import annotations

import collections

import asyncpg
import orjson

from shared.kafka.producer import DeliveryError, OutgoingMessage, Producer
from shared.observability.metrics import OUTBOX_PUBLISHED

DB_TIMEOUT = 30.0  # seconds; a hung connection must surface as an error, not a stuck relay

_SELECT = (
    "SELECT id, topic, key, value, headers FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1"
)
_MARK = "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])"
_BACKLOG = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"


def _message(row: asyncpg.Record) -> OutgoingMessage:
    headers = [(name, value.encode()) for name, value in orjson.loads(row["headers"])]
    return OutgoingMessage(row["topic"], row["key"].encode(), row["value"], headers)


async def publish_batch(
    pool: asyncpg.Pool, producer: Producer, limit: int, *, relay: str
) -> tuple[int, int]:
    """Publish up to `limit` unsent rows; return (rows selected, rows published and marked).
    Raises DeliveryError after marking the acknowledged prefix."""
    rows = await pool.fetch(_SELECT, limit, timeout=DB_TIMEOUT)
    if not rows:
        return 0, 0
    failure: DeliveryError | None = None
    try:
        await producer.send_all([_message(r) for r in rows])
        delivered = len(rows)
    except DeliveryError as exc:
        failure, delivered = exc, exc.delivered
    if delivered:
        await pool.execute(_MARK, [r["id"] for r in rows[:delivered]], timeout=DB_TIMEOUT)
        for topic, count in collections.Counter(r["topic"] for r in rows[:delivered]).items():
            OUTBOX_PUBLISHED.labels(relay=relay, topic=topic).inc(count)
    if failure is not None:
        raise failure
    return len(rows), delivered


async def backlog(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(_BACKLOG, timeout=DB_TIMEOUT)
    return count
