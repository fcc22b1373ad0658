"""Writes the saga view (store.py) behind the agent, in batches: the agent never waits on
PostgreSQL, and a burst of transitions of one saga costs one upsert. The view may trail the
table by a moment; after a crash the next transition of each saga brings it up to date, and a
worker that recovers partitions writes their sagas again."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from services.orchestrator import store
from services.orchestrator.saga import Saga, Status
from shared.observability.logging import get_logger
from shared.observability.metrics import SAGA_STATES
from shared.retry import is_outage

log = get_logger(__name__)


class ViewWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        interval: float = 0.2,
        counts_every: float = 5.0,
        liveness_window: float = 120.0,
    ) -> None:
        self._pool = pool
        self._interval, self._counts_every = interval, counts_every
        self._window = liveness_window
        self._pending: dict[str, Saga] = {}
        self._progress: dict[tuple[str, int], int] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[object] | None = None
        self._beat = time.monotonic()

    def put(self, saga: Saga) -> None:
        self._pending[saga.order_id] = saga

    def applied(self, topic: str, partition: int, next_offset: int) -> None:
        """The agent applied the partition's records before `next_offset`, and their effects
        (table writes, commands) are durable: a successor reads on from here."""
        self._progress[(topic, partition)] = next_offset

    async def progress(self, topic: str, partition: int) -> int | None:
        """The next offset to apply, as far as any worker recorded it."""
        return await store.progress(self._pool, topic, partition)

    async def flush(self) -> int:
        batch, self._pending = list(self._pending.values()), {}
        progress, self._progress = self._progress, {}
        try:
            await store.save(self._pool, batch)
            await store.save_progress(self._pool, progress)
        except BaseException:
            # put back what is not newer in the meantime: nothing is lost, nothing goes back
            for saga in batch:
                self._pending.setdefault(saga.order_id, saga)
            for tp, offset in progress.items():
                self._progress.setdefault(tp, offset)
            raise
        return len(batch)

    async def run(self) -> None:
        self._task = asyncio.current_task()
        counted = 0.0
        while not self._stopping.is_set():
            try:
                await self.flush()
                if time.monotonic() - counted >= self._counts_every:
                    await self._count()
                    counted = time.monotonic()
            except Exception as exc:
                if not (is_outage(exc) or isinstance(exc, asyncpg.PostgresError)):
                    raise
                log.warning("saga view not written", error=repr(exc))
            self._beat = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
        with contextlib.suppress(Exception):
            await self.flush()

    async def _count(self) -> None:
        counts = await store.counts(self._pool)
        for status in Status:
            SAGA_STATES.labels(state=status.value).set(counts.get(status.value, 0))

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None and self._task is not asyncio.current_task():
            await asyncio.wait({self._task})

    def is_alive(self) -> bool:
        return (
            self._task is not None
            and not self._task.done()
            and time.monotonic() - self._beat < self._window
        )
