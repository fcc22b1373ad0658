"""The outbox relay: one active publisher per database, the others standing by.

Leadership is a PostgreSQL session advisory lock held on a dedicated connection, which also
LISTENs for the outbox trigger's NOTIFY. When that connection drops, the lock is gone and
another relay may already publish, so this one stops its batch at once and stands by again.

The lock saves duplicate work; it is not what keeps per-key order. Order holds because every
relay publishes the unsent rows in id order and only skips rows already marked sent (delivered),
not yet committed, or parked together with the rest of their key (batch.py). A relay that still
publishes after losing the lock therefore only adds duplicates. Taking rows with `SKIP LOCKED`
instead would let a second relay publish a key's later rows while the first still holds its
earlier ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, TypeAlias

import asyncpg
from aiokafka.errors import KafkaError
from asyncpg.pool import PoolConnectionProxy

from shared.kafka.producer import DeliveryError, Producer, ProducerSettings
from shared.kafka.security import PLAINTEXT, KafkaSecurity
from shared.observability.logging import get_logger
from shared.observability.metrics import OUTBOX_BACKLOG, OUTBOX_PARKED
from shared.postgres.outbox import CHANNEL
from shared.relay.batch import DB_TIMEOUT, backlog, publish_batch
from shared.relay.parking import count_parked, parked_note
from shared.relay.topics import TopicCheck
from shared.retry import backoff_delay

# Any constant works: advisory locks are scoped to the database, so one relay per database.
LOCK_KEY = 0x4C4C_0B0C

_TRANSIENT = (
    DeliveryError,
    KafkaError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # what a connection the server has just dropped (FATAL while idle) answers the next query
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
_MAX_BACKOFF = 15.0

_log = get_logger(__name__)

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


async def _wait_any(timeout: float, *events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=max(timeout, 0.0), return_when="FIRST_COMPLETED")
    finally:
        for w in waiters:
            w.cancel()


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        bootstrap_servers: str,
        name: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        standby_interval: float = 2.0,
        liveness_window: float = 60.0,
        missing_topic_grace: float = 60.0,
        producer_settings: ProducerSettings | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        """`missing_topic_grace`: seconds a topic may be missing (being created) before its rows
        are parked; a refusal that retrying cannot change parks a row at once."""
        self.name = name
        self._pool = pool
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._standby_interval = standby_interval
        self._window = liveness_window
        # how often an idle leader checks that its lock connection still answers
        self._tick = min(poll_interval, 1.0)
        settings = producer_settings or ProducerSettings()
        self._grace = settings.delivery_timeout + settings.close_timeout
        self._producer = Producer(
            bootstrap_servers, client_id=f"relay-{name}", settings=settings, security=security
        )
        self._topics = TopicCheck(
            bootstrap_servers,
            client_id=f"relay-{name}",
            missing_grace=missing_topic_grace,
            timeout_ms=settings.request_timeout_ms,
            security=security,
        )
        self._stopping = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._beat_at = 0.0
        self.active = False  # holds the lock and publishes
        self.published = 0  # rows this instance published and marked
        self.parked = 0  # parked rows in the database, as of the last pass or check

    async def run(self) -> None:
        """Publish until stop(); stand by while another relay of this database is active."""
        self._task = asyncio.current_task()
        standing_by = False
        try:
            while not self._stopping.is_set():
                self._beat()
                try:
                    conn = await self._try_lead()
                except _TRANSIENT as exc:
                    _log.warning("relay cannot reach postgres", relay=self.name, error=repr(exc))
                    conn = None
                if conn is None:
                    if not standing_by:
                        _log.info("relay standing by", relay=self.name)
                    standing_by = True
                    await _wait_any(self._standby_interval, self._stopping)
                    continue
                standing_by = False
                try:
                    await self._lead(conn)
                finally:
                    self.active = False
                    await self._stop_clients()
                    await self._release(conn)
        finally:
            await self._stop_clients()

    async def stop(self) -> None:
        """Finish the batch in flight, close the producer, release the lock."""
        self._stopping.set()
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            await asyncio.wait({task}, timeout=self._grace)
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        await self._stop_clients()

    def is_alive(self) -> bool:
        """False when run() is not running, or has not come round its loop within the window
        (a hung query or broker call, a deadlock)."""
        if self._task is None or self._task.done():
            return False
        return time.monotonic() - self._beat_at < self._window

    async def publish_pending(self) -> int:
        """Publish every row that is unsent now, batch by batch, parking those Kafka refuses for
        good and holding back the rows of their keys; return rows published. run() calls it
        only while holding the lock; called directly (tests, benchmarks) it is still safe next
        to an active relay, merely duplicating."""
        published = 0
        async with self._pass_lock:
            try:
                while True:
                    self._beat()
                    batch = await publish_batch(
                        self._pool, self._producer, self._topics, self._batch_size, relay=self.name
                    )
                    published += batch.published
                    self.published += batch.published
                    if not batch.more(self._batch_size) or self._stopping.is_set():
                        break
            except _TRANSIENT:
                await self._report()
                raise
            await self._report()
        return published

    async def check_parked(self) -> str | None:
        """What readiness says while the database has parked rows: the relay cannot fix them,
        an operator must retry or drop them. A note, not a failure: the instance still serves
        and publishes every other key, and failing readiness would take every replica (they
        share the database) out of traffic over one row. Asks the database, so a relay
        standing by answers as well as the active one."""
        self.parked = await count_parked(self._pool)
        OUTBOX_PARKED.labels(relay=self.name).set(self.parked)
        return parked_note(self.parked) if self.parked else None

    async def _report(self) -> None:
        with contextlib.suppress(*_TRANSIENT):
            OUTBOX_BACKLOG.labels(relay=self.name).set(await backlog(self._pool))
            await self.check_parked()

    async def _stop_clients(self) -> None:
        await self._producer.stop()
        with contextlib.suppress(*_TRANSIENT):
            await self._topics.close()

    def _beat(self) -> None:
        self._beat_at = time.monotonic()

    async def _try_lead(self) -> Connection | None:
        conn = await self._pool.acquire(timeout=DB_TIMEOUT)
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY, timeout=DB_TIMEOUT):
                return conn
        except BaseException:
            await self._release(conn)
            raise
        await self._release(conn)
        return None

    async def _release(self, conn: Connection) -> None:
        # the pool's reset on release runs pg_advisory_unlock_all() and UNLISTEN *
        try:
            await self._pool.release(conn, timeout=DB_TIMEOUT)
        except _TRANSIENT as exc:
            _log.warning("relay lock connection not released cleanly", error=repr(exc))

    async def _lead(self, conn: Connection) -> None:
        lost, wake = asyncio.Event(), asyncio.Event()

        def on_terminate(_: Any) -> None:
            lost.set()

        def on_notify(*_: Any) -> None:
            wake.set()

        conn.add_termination_listener(on_terminate)
        try:
            # LISTEN before the first pass: a commit after this wakes us, one before is seen
            # by the pass itself
            await conn.add_listener(CHANNEL, on_notify)
            self.active = True
            _log.info("relay active", relay=self.name)
            await self._publish_while_leading(conn, lost, wake)
        except _TRANSIENT as exc:  # LISTEN failed: the lock connection is gone
            lost.set()
            _log.warning("relay lock connection failed", relay=self.name, error=repr(exc))
        finally:
            with contextlib.suppress(*_TRANSIENT):  # a closed one is already detached
                conn.remove_termination_listener(on_terminate)
                if lost.is_set():
                    conn.terminate()  # never hand a failed session back to the pool
                else:
                    await conn.remove_listener(CHANNEL, on_notify)
        if lost.is_set():
            _log.warning("relay lost its lock, standing by", relay=self.name)

    async def _publish_while_leading(
        self, conn: Connection, lost: asyncio.Event, wake: asyncio.Event
    ) -> None:
        due, failures, pinged = 0.0, 0, time.monotonic()
        while not self._stopping.is_set() and not lost.is_set():
            self._beat()
            if time.monotonic() >= due or (wake.is_set() and not failures):
                wake.clear()  # before the pass: a NOTIFY during it triggers another
                try:
                    if not await self._unless_lost(lost):
                        return
                    failures, due = 0, time.monotonic() + self._poll_interval
                except _TRANSIENT as exc:
                    failures += 1
                    due = time.monotonic() + backoff_delay(failures, 0.5, _MAX_BACKOFF)
                    _log.warning("relay pass failed", relay=self.name, error=repr(exc))
            # while backing off, a NOTIFY must not cut the pause short
            events = (lost, self._stopping) if failures else (wake, lost, self._stopping)
            await _wait_any(min(due - time.monotonic(), self._tick), *events)
            if not lost.is_set() and time.monotonic() - pinged >= self._tick:
                try:
                    await conn.fetchval("SELECT 1", timeout=DB_TIMEOUT)
                    pinged = time.monotonic()
                except _TRANSIENT:
                    lost.set()

    async def _unless_lost(self, lost: asyncio.Event) -> bool:
        """Run one pass; cancel it the moment the lock connection drops (False then)."""
        pass_task = asyncio.ensure_future(self.publish_pending())
        lost_waiter = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait({pass_task, lost_waiter}, return_when="FIRST_COMPLETED")
        finally:
            lost_waiter.cancel()
            if not pass_task.done():
                pass_task.cancel()
                await asyncio.wait({pass_task})
        if pass_task.cancelled():
            return False
        pass_task.result()
        return True
