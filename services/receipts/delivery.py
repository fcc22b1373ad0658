"""The delivery loop: sends issued receipts through the channel, apart from issuing them.

Issuing commits the receipt and a pending delivery together; this loop takes due deliveries,
sends, and marks them delivered, or reschedules them with exponential backoff. A failure here
never touches the receipt, so a retry can never issue a second one. The loop delivers at least
once (a crash between sending and marking sends again); the channels make that repeat harmless
where they can (see `channels`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from email.message import EmailMessage

import asyncpg
from prometheus_client import Counter

from services.receipts import store
from services.receipts.channels import Channel
from services.receipts.domain import Receipt
from shared.observability.logging import get_logger
from shared.retry import backoff_delay, is_outage

DELIVERIES = Counter(
    "leadline_receipt_deliveries_total", "Receipt delivery attempts.", ["channel", "outcome"]
)
log = get_logger(__name__)


class DeliveryLoop:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        channel: Channel,
        compose: Callable[[Receipt], EmailMessage],
        poll_interval: float = 1.0,
        batch_size: int = 20,
        lease_seconds: float = 60.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        liveness_window: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self._pool, self._compose = pool, compose
        self._poll, self._batch, self._lease = poll_interval, batch_size, lease_seconds
        self._initial, self._max = backoff_initial, backoff_max
        self._window = liveness_window
        self._clock = clock
        self._stopping = asyncio.Event()
        self._last_pass = time.monotonic()
        self._task: asyncio.Task[object] | None = None

    async def deliver_due(self) -> int:
        """One pass over due deliveries; returns how many were delivered."""
        claimed = await store.claim_due_deliveries(self._pool, self._batch, self._lease)
        # Start no send once half the lease is gone: one begun later could still be running
        # when the lease ends and another instance claims (and sends) the same receipt. What is
        # left stays claimed until then and is taken again by the next pass to claim it.
        send_until = self._clock() + self._lease / 2
        delivered = 0
        for receipt, attempt in claimed:
            if self._clock() > send_until:
                break
            try:
                await self.channel.deliver(receipt.number, self._compose(receipt))
            except Exception as exc:
                retry_in = backoff_delay(attempt, self._initial, self._max)
                await store.mark_failed(self._pool, receipt.number, repr(exc), retry_in)
                DELIVERIES.labels(self.channel.name, "failed").inc()
                log.warning(
                    "receipt delivery failed",
                    number=receipt.number,
                    attempt=attempt,
                    retry_in=retry_in,
                    error=repr(exc),
                )
                continue
            await store.mark_delivered(self._pool, receipt.number)
            DELIVERIES.labels(self.channel.name, "delivered").inc()
            log.info("receipt delivered", number=receipt.number, channel=self.channel.name)
            delivered += 1
        return delivered

    async def run(self) -> None:
        """Deliver until stop(); database outages are logged and retried on the next tick."""
        self._task = asyncio.current_task()
        while not self._stopping.is_set():
            try:
                busy = await self.deliver_due() == self._batch
            except Exception as exc:
                # anything else is a bug: the loop dies and liveness says so
                if not (is_outage(exc) or isinstance(exc, asyncpg.PostgresError)):
                    raise
                log.warning("delivery pass failed", error=repr(exc))
                busy = False
            self._last_pass = time.monotonic()
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None and self._task is not asyncio.current_task():
            await asyncio.wait({self._task})

    def is_alive(self) -> bool:
        return (
            self._task is not None
            and not self._task.done()
            and time.monotonic() - self._last_pass < self._window
        )
