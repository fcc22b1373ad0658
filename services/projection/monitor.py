"""Keeps the projection's gauges current: each view's lag (from its runner) and the progress
of rebuilds (from the `rebuilds` table, which the rebuild command writes from its own process)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import asyncpg

from services.projection import queries
from services.projection.consumers import ViewConsumers
from services.projection.metrics import REBUILD_PROGRESS, REBUILD_RECORDS, VIEW_LAG
from shared.observability.logging import get_logger

log = get_logger(__name__)


class Monitor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        consumers: Callable[[], ViewConsumers | None],
        every: float = 2.0,
    ) -> None:
        self._pool = pool
        self._consumers = consumers
        self._every = every
        self._stopping = asyncio.Event()
        self._last = time.monotonic()

    async def run(self) -> None:
        while not self._stopping.is_set():
            running = self._consumers()
            for name, runner in running.runners.items() if running else ():
                lag = runner.lag()
                if lag is not None:
                    VIEW_LAG.labels(name).set(lag)
            try:
                for row in await queries.rebuilds(self._pool):
                    done, total = row["done"], row["total"]
                    REBUILD_RECORDS.labels(row["view"]).set(done)
                    REBUILD_PROGRESS.labels(row["view"]).set(done / total if total else 1.0)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("rebuild progress not read", error=repr(exc))
            self._last = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every)

    async def stop(self) -> None:
        self._stopping.set()

    def is_alive(self) -> bool:
        return time.monotonic() - self._last < max(30.0, 5 * self._every)
