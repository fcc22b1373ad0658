"""The saga pipeline's orderings (services/orchestrator/pipeline.py), with a changelog whose
acknowledgements the test gives or withholds, and a send that records what it was handed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from services.orchestrator.pipeline import Pipeline
from shared.kafka.producer import OutgoingMessage


class Changelog:
    """Table writes as futures the test resolves; `take_unconfirmed` as DurableTable's."""

    def __init__(self) -> None:
        self.issued: list[tuple[str, asyncio.Future[Any]]] = []
        self._unconfirmed: list[asyncio.Future[Any]] = []

    def write(self, key: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.issued.append((key, future))
        self._unconfirmed.append(future)
        return future

    def take_unconfirmed(self) -> list[asyncio.Future[Any]]:
        taken, self._unconfirmed = self._unconfirmed, []
        return taken


def command(name: str) -> OutgoingMessage:
    return OutgoingMessage("t", name.encode(), name.encode(), [])


class Harness:
    def __init__(self) -> None:
        self.changelog = Changelog()
        self.sent: list[str] = []
        self.rewritten: list[tuple[str, Any]] = []
        self.pipeline = Pipeline(self.changelog, self._rewrite, self._send, write_timeout=5.0)

    def _rewrite(self, key: str, source: Any) -> None:
        self.rewritten.append((key, source))
        self.changelog.write(key)

    async def _send(self, messages: list[OutgoingMessage]) -> None:
        self.sent += [m.key.decode() for m in messages]

    def apply(self, key: str, source: Any, *commands: str) -> asyncio.Future[Any]:
        """What the processor does for one record: the table write, then its commands."""
        written = self.changelog.write(key)
        self.pipeline.wrote(key, source)
        self.pipeline.send(source, [command(c) for c in commands])
        return written


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    task = asyncio.create_task(h.pipeline.run())
    yield h
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


async def settle() -> None:
    for _ in range(20):  # let the pipeline's task take every step it can
        await asyncio.sleep(0)


async def test_commands_wait_for_their_changelog_write(harness: Harness) -> None:
    written = harness.apply("o-1", "r1", "ReserveStock")
    await settle()
    assert harness.sent == []
    assert harness.pipeline.pending == 2

    written.set_result(None)
    await asyncio.wait_for(harness.pipeline.drain(), 5)
    assert harness.sent == ["ReserveStock"]
    assert harness.pipeline.pending == 0


async def test_drain_waits_for_what_was_staged_before_it(harness: Harness) -> None:
    first = harness.apply("o-1", "r1", "A")
    drained = asyncio.create_task(harness.pipeline.drain())
    await settle()
    assert not drained.done()

    first.set_result(None)
    await asyncio.wait_for(drained, 5)
    assert harness.sent == ["A"]


async def test_drain_does_not_wait_for_what_is_staged_after_it(harness: Harness) -> None:
    first = harness.apply("o-1", "r1", "A")
    drained = asyncio.create_task(harness.pipeline.drain())
    await settle()
    harness.apply("o-2", "r2", "B")  # never acknowledged
    first.set_result(None)
    await asyncio.wait_for(drained, 5)
    assert harness.sent == ["A"]
    assert harness.pipeline.pending == 2


async def test_commands_go_in_the_order_they_were_staged(harness: Harness) -> None:
    writes = [harness.apply(f"o-{i}", f"r{i}", f"c{i}a", f"c{i}b") for i in range(5)]
    for w in reversed(writes):
        w.set_result(None)
    await asyncio.wait_for(harness.pipeline.drain(), 5)
    assert harness.sent == [f"c{i}{x}" for i in range(5) for x in "ab"]


async def test_a_failed_write_is_written_again_and_its_commands_wait_for_that(
    harness: Harness,
) -> None:
    written = harness.apply("o-1", "r1", "ReserveStock")
    written.set_exception(TimeoutError("no ack"))
    await until(lambda: bool(harness.rewritten))  # after the first backoff (0.1 s)
    assert harness.rewritten == [("o-1", "r1")]
    assert harness.sent == []

    key, again = harness.changelog.issued[-1]
    assert key == "o-1"
    again.set_result(None)
    await asyncio.wait_for(harness.pipeline.drain(), 5)
    assert harness.sent == ["ReserveStock"]


async def test_a_failed_write_rewrites_the_keys_staged_after_it_too(harness: Harness) -> None:
    first = harness.apply("o-1", "r1", "A")
    await settle()  # the pipeline has taken o-1's write and waits on it
    second = harness.apply("o-2", "r2", "B")
    first.set_exception(TimeoutError("no ack"))
    await until(lambda: len(harness.rewritten) >= 2)
    # o-2's write was issued before the retry took the unconfirmed writes: written again too
    assert sorted(k for k, _ in harness.rewritten) == ["o-1", "o-2"]
    for _, future in harness.changelog.issued:
        if not future.done():
            future.set_result(None)
    assert second.done()  # the retry awaited o-2's first write as well
    await asyncio.wait_for(harness.pipeline.drain(), 5)
    assert harness.sent == ["A", "B"]


async def test_what_is_told_after_the_effects_staged_before_it_waits_for_them(
    harness: Harness,
) -> None:
    told: list[str] = []
    written = harness.apply("o-1", "r1", "ReserveStock")
    harness.pipeline.then(lambda: told.append(f"after {harness.sent}"))
    await settle()
    assert told == []  # the write is not acknowledged, the command not sent

    written.set_result(None)
    await asyncio.wait_for(harness.pipeline.drain(), 5)
    assert told == ["after ['ReserveStock']"]


async def test_what_is_told_is_told_once_in_staging_order_even_after_a_failed_write(
    harness: Harness,
) -> None:
    told: list[int] = []
    first = harness.apply("o-1", "r1", "A")
    harness.pipeline.then(lambda: told.append(1))
    harness.apply("o-2", "r2", "B").set_result(None)
    harness.pipeline.then(lambda: told.append(2))
    first.set_exception(TimeoutError("no ack"))
    await until(lambda: bool(harness.rewritten))
    assert told == []
    for _, future in harness.changelog.issued:
        if not future.done():
            future.set_result(None)
    await asyncio.wait_for(harness.pipeline.drain(), 5)
    assert told == [1, 2]
