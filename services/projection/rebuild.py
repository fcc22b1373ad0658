"""Live rebuild: replay one view from the beginning of its topics into a shadow schema, then
swap the shadow in, while the live view keeps serving and consuming.

1. The shadow schema is made from the code's DDL, so a view whose code changed is rebuilt in
   its new shape by its new handlers.
2. Replay: a consumer with no group reads every partition of the view's topics from the first
   offset and applies each record through the view's own handlers and inbox (under the live
   consumer's name, so the claims mean the same after the swap).
3. Swap, in one transaction: lock the live inbox in EXCLUSIVE mode. Readers go on; the live
   consumer's transaction in flight finishes first, its next claim waits. Everything the live
   view applied is now below the partitions' ends: replay into the shadow up to the ends read
   under the lock, so the shadow holds all of it (and perhaps more). Rename the schemas and drop
   the old one. The live consumer's waiting claim then lands in the new inbox, which already
   holds what the shadow applied: nothing is applied twice, nothing is missed.

A record the live consumer would dead-letter (undecodable, refused by its handler) is skipped
here: dead letters are the live consumer's to write, once. An outage ends the rebuild with an
error; run it again (the shadow is made afresh).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.projection.store import ViewUnitOfWork, shadow_schema
from services.projection.views import View
from shared.errors import PermanentError
from shared.kafka.admin import partitions
from shared.kafka.consumer import fingerprint, inbox_scope
from shared.kafka.decoding import Rejected, Work, route, routes
from shared.kafka.security import PLAINTEXT, KafkaSecurity
from shared.observability.logging import get_logger, message_context
from shared.ports import Claim
from shared.retry import is_outage

log = get_logger(__name__)

Progress = Callable[[int, int], None]
"""(records replayed, records to replay so far): the total grows while traffic goes on."""


class RebuildBusyError(RuntimeError):
    """Another rebuild of the same view is running."""


@dataclass(frozen=True)
class RebuildResult:
    view: str
    records: int  # records read from the topics
    applied: int  # records whose handler ran (first seen)
    skipped: int  # records the live consumer would dead-letter
    seconds: float


class _Replay:
    def __init__(
        self, view: View, pool: asyncpg.Pool, consumer: Any, topic: Callable[[str], str], name: str
    ) -> None:
        self.view = view
        self.pool = pool
        self.consumer = consumer
        self.name = name
        self.routes = routes(view.subscriptions(topic))
        self.schema = shadow_schema(view.name)
        self.records = self.applied = self.skipped = 0

    async def until(
        self, ends: dict[TopicPartition, int], after_batch: Callable[[], Awaitable[None]]
    ) -> None:
        """Apply records until every partition's position has reached `ends`."""
        while True:
            behind = [tp for tp, end in ends.items() if await self.consumer.position(tp) < end]
            if not behind:
                return
            batch = await self.consumer.getmany(*behind, timeout_ms=500, max_records=2000)
            # every record fetched, those past `ends` too: the position has moved past them,
            # and a record applied early is one the live view will find in the inbox
            records = [r for tp in behind for r in batch.get(tp, [])]
            if records:
                await self._apply(records)
                await after_batch()

    async def _apply(self, records: list[Any]) -> None:
        async with ViewUnitOfWork(self.pool, self.schema) as uow:
            for record in records:
                self.records += 1
                outcome = route(record, self.routes)
                if isinstance(outcome, Rejected):
                    self.skipped += 1
                elif isinstance(outcome, Work):
                    await self._one(uow, outcome)

    async def _one(self, uow: ViewUnitOfWork, work: Work[ViewUnitOfWork]) -> None:
        envelope = work.envelope
        with message_context(envelope):
            try:
                async with uow.connection.transaction():  # a savepoint: one record's rows
                    claim = await uow.inbox.claim(
                        self.name,
                        envelope.event_id,
                        scope=inbox_scope(work.record, envelope),
                        fingerprint=fingerprint(envelope),
                    )
                    if claim is Claim.NEW:
                        await work.subscription.handler(envelope, work.message, uow)
                        await uow.flush()  # inside the savepoint: a failing record alone
                        self.applied += 1
                    elif claim is Claim.COLLISION:
                        raise PermanentError("event id reused by another message")
            except Exception as exc:
                if is_outage(exc):
                    raise
                self.skipped += 1
                log.warning("record skipped by the rebuild", error=repr(exc))


async def rebuild(
    view: View,
    pool: asyncpg.Pool,
    *,
    bootstrap_servers: str,
    topic: Callable[[str], str],
    consumer_name: str,
    progress: Progress | None = None,
    lock_timeout: float = 30.0,
    security: KafkaSecurity = PLAINTEXT,
) -> RebuildResult:
    """Rebuild `view` into its shadow schema and swap it in (see the module docstring)."""
    started = time.monotonic()
    async with pool.acquire() as guard:
        key = f"projection.rebuild.{view.name}"
        if not await guard.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            raise RebuildBusyError(f"a rebuild of {view.name!r} is already running")
        try:
            await guard.execute(f"DROP SCHEMA IF EXISTS {shadow_schema(view.name)} CASCADE")
            await guard.execute(view.ddl(shadow_schema(view.name)))
            await _state(pool, view.name, "replaying", 0, 0)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap_servers,
                client_id=f"{consumer_name}.rebuild",
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                **security.aiokafka(),
            )
            await consumer.start()
            try:
                result = await _replay_and_swap(
                    view,
                    pool,
                    consumer,
                    topic,
                    consumer_name,
                    progress,
                    lock_timeout,
                    bootstrap_servers,
                    security,
                )
            finally:
                await consumer.stop()
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the database may be what failed
                await _state(pool, view.name, "failed", error=repr(exc))
            raise
        finally:
            await guard.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
    seconds = time.monotonic() - started
    log.info("view rebuilt", view=view.name, records=result[0], applied=result[1], seconds=seconds)
    return RebuildResult(view.name, *result, seconds=seconds)


async def _replay_and_swap(
    view: View,
    pool: asyncpg.Pool,
    consumer: Any,
    topic: Callable[[str], str],
    name: str,
    progress: Progress | None,
    lock_timeout: float,
    bootstrap_servers: str,
    security: KafkaSecurity,
) -> tuple[int, int, int]:
    names = [topic(t) for t in view.topics]
    found = await partitions(bootstrap_servers, names, security=security)
    tps = [TopicPartition(name, p) for name in names for p in found[name]]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    first: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
    replay = _Replay(view, pool, consumer, topic, name)
    total = 0
    saved = 0.0

    async def after_batch() -> None:
        nonlocal saved
        if progress is not None:
            progress(replay.records, max(total, replay.records))
        if time.monotonic() - saved > 0.5:
            await _state(pool, view.name, "replaying", replay.records, total)
            saved = time.monotonic()

    async def replay_to_end() -> None:
        nonlocal total
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        total = sum(ends[tp] - first[tp] for tp in tps)
        await replay.until(ends, after_batch)

    # catch up with the live traffic until a round has little left to do (or enough rounds
    # went by), then swap: what is left is replayed under the lock
    for _ in range(20):
        before = replay.records
        await replay_to_end()
        if replay.records - before < 1000:
            break
    await _state(pool, view.name, "swapping", replay.records, total)
    live, shadow = view.schema, shadow_schema(view.name)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{live}.inbox")
        if exists:
            await conn.execute(f"LOCK TABLE {live}.inbox IN EXCLUSIVE MODE")
        await replay_to_end()
        retired = f"{live}__retired"
        await conn.execute(f"DROP SCHEMA IF EXISTS {retired} CASCADE")
        if exists:
            await conn.execute(f"ALTER SCHEMA {live} RENAME TO {retired}")
        await conn.execute(f"ALTER SCHEMA {shadow} RENAME TO {live}")
        # dropped in this transaction, not later: a statement the live consumer prepared
        # against the old tables is invalidated at commit and planned again on the new ones
        await conn.execute(f"DROP SCHEMA IF EXISTS {retired} CASCADE")
        await _state(pool, view.name, "done", replay.records, total, conn=conn)
    if progress is not None:
        progress(replay.records, replay.records)
    return replay.records, replay.applied, replay.skipped


async def _state(
    pool: asyncpg.Pool,
    view: str,
    state: str,
    done: int = 0,
    total: int = 0,
    *,
    error: str | None = None,
    conn: Any = None,
) -> None:
    sql = (
        "INSERT INTO rebuilds (view, state, done, total, error) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (view) DO UPDATE SET state = $2, done = $3, total = $4, error = $5,"
        " updated_at = now(), started_at = CASE WHEN $2 = 'replaying' AND $3 = 0"
        " THEN now() ELSE rebuilds.started_at END"
    )
    if conn is not None:
        await conn.execute(sql, view, state, done, total, error)
    else:
        await pool.execute(sql, view, state, done, total, error)
