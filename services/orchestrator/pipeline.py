"""The saga agent's effects made durable behind it, in the order a crash needs.

Applying a message to a saga takes well under a millisecond; awaiting its changelog write and
then its commands' acknowledgements, one message at a time, was most of the orchestrator's cost
(`bench/bench_saga.py`: 0.11x a bare faust agent over the same topics). So the agent stages what
a message did (a table key written, commands to send) and moves on to the next message, and this
pipeline makes the staged effects durable in batches, keeping the two orderings the saga relies
on:

- a batch's changelog writes are acknowledged before any of its commands is sent: a reply can
  only exist once the saga state that expects it survives a crash (a worker rebuilding the table
  from its changelog never meets a reply to a step it has not taken);
- faust commits a source offset only once everything staged before it is durable: the
  orchestrator's transport calls `drain` before each commit (`transport.py`), so a crash loses
  no message whose effects were not made durable; those are read again, and the saga, finding
  their ids applied or not, sends the very same commands;
- what is told once everything staged before it is durable (`then`) is told after it: the
  saga progress a successor trusts (the processor's record of the offsets applied) never runs
  ahead of the effects a crash would lose.

A changelog write that fails (or is not acknowledged in time) is written again from the table's
current value, which is the newest, and awaited again; commands are sent by the processor's own
send, which retries until every one is acknowledged. Nothing here gives up: like a command's
send, a broker away is waited out (liveness reports the stall).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.kafka.producer import OutgoingMessage
from shared.observability.logging import get_logger
from shared.retry import backoff_delay

log = get_logger(__name__)


class Changelog(Protocol):
    def take_unconfirmed(self) -> list[asyncio.Future[Any]]:
        """The changelog writes issued since the last call, not yet known to be acknowledged."""
        ...


Rewrite = Callable[[str, Any], None]  # (table key, the record that wrote it) -> write it again
Send = Callable[[list[OutgoingMessage]], Awaitable[None]]


@dataclass(frozen=True)
class _Staged:
    key: str | None  # a table key written, or None
    source: Any  # the record whose processing staged it (the changelog partition comes from it)
    messages: tuple[OutgoingMessage, ...]
    done: Callable[[], None] | None = field(default=None)  # told once it is durable


class Pipeline:
    def __init__(
        self, changelog: Changelog, rewrite: Rewrite, send: Send, write_timeout: float = 30.0
    ) -> None:
        self._changelog = changelog
        self._rewrite = rewrite
        self._send = send
        self._write_timeout = write_timeout
        self._staged: list[_Staged] = []
        self._count = 0  # entries staged so far
        self._durable = 0  # of which durable
        self._work = asyncio.Event()
        self._progress = asyncio.Condition()

    @property
    def pending(self) -> int:
        """Entries staged and not yet durable."""
        return self._count - self._durable

    def wrote(self, key: str, source: Any) -> None:
        """`key` was just written to the table while `source` was processed."""
        self._stage(_Staged(key, source, ()))

    def send(self, source: Any, messages: list[OutgoingMessage]) -> None:
        """Send `messages` once every table write staged so far is acknowledged."""
        if messages:
            self._stage(_Staged(None, source, tuple(messages)))

    def then(self, done: Callable[[], None]) -> None:
        """Call `done` once everything staged so far is durable (in staging order)."""
        self._stage(_Staged(None, None, (), done))

    def _stage(self, entry: _Staged) -> None:
        self._staged.append(entry)
        self._count += 1
        self._work.set()

    async def drain(self) -> None:
        """Return once everything staged before this call is durable."""
        target = self._count
        async with self._progress:
            await self._progress.wait_for(lambda: self._durable >= target)

    async def run(self) -> None:
        """Make staged entries durable, batch after batch, until cancelled."""
        while True:
            await self._work.wait()
            self._work.clear()
            failures = 0
            while self._staged:
                # taken together, with no await between: the writes are this batch's (and,
                # at most, those of entries staged later, which are then awaited early)
                batch, self._staged = self._staged, []
                upto = self._count
                writes = self._changelog.take_unconfirmed()
                try:
                    await self._made_durable(batch, writes)
                except Exception as exc:  # not expected: the batch again, never lost
                    failures += 1
                    log.error("saga effects not made durable, again", error=repr(exc))
                    self._staged[:0] = batch
                    await asyncio.sleep(backoff_delay(failures, 0.1, 5.0))
                    continue
                async with self._progress:
                    self._durable = upto
                    self._progress.notify_all()

    async def _made_durable(self, batch: list[_Staged], writes: list[asyncio.Future[Any]]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                if writes:
                    await asyncio.wait_for(asyncio.gather(*writes), self._write_timeout)
                break
            except Exception as exc:  # written again below: the table holds the value
                log.warning("saga changelog write failed", attempt=attempt, error=repr(exc))
                await asyncio.sleep(backoff_delay(attempt, 0.1, 5.0))
                # the failed writes may include entries staged after the batch: all of them
                for key, source in {e.key: e.source for e in (*batch, *self._staged)}.items():
                    if key is not None:
                        self._rewrite(key, source)
                writes = self._changelog.take_unconfirmed()
        messages = [m for entry in batch for m in entry.messages]
        if messages:
            await self._send(messages)
        for entry in batch:
            if entry.done is not None:
                entry.done()
