"""The `topics` one-shot (`python -m shared.kafka.admin ensure-topics`) outlasts a broker that
does not answer yet: a connection that hangs is given up after the request timeout and tried
again, until its own deadline. Found on the compose stack under podman, where a container's
name lookups can go unanswered for ~40 s while another container of the network stops
(aardvark-dns 1.4): the one-shot failed and no service started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka.errors import KafkaConnectionError

from shared.kafka.admin import ensure_topics_patiently
from tests.support import unique
from tests.support.infra import topic_overrides

pytestmark = pytest.mark.integration


class SilentFirst:
    """A TCP front for the broker: the first `silent` connections are accepted and never
    answered; later ones are piped to the broker."""

    def __init__(self, broker: str, silent: int) -> None:
        self.host, port = broker.rsplit(":", 1)
        self.port = int(port)
        self.silent = silent
        self.accepted = 0
        self._held: list[asyncio.StreamWriter] = []
        self._pipes: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.accepted <= self.silent:
            self._held.append(writer)  # open, read by nobody: what a lost lookup looks like
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        for writer in self._held:
            writer.close()
        for task in self._pipes:
            task.cancel()


async def _front(broker: str, silent: int) -> AsyncIterator[tuple[str, SilentFirst]]:
    front = SilentFirst(broker, silent)
    server = await asyncio.start_server(front.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}", front
    finally:
        front.close()
        server.close()


@pytest.fixture
async def hanging_once(kafka_bootstrap: str) -> AsyncIterator[tuple[str, SilentFirst]]:
    async for front in _front(kafka_bootstrap, silent=1):
        yield front


async def test_a_connection_that_hangs_is_given_up_and_tried_again(
    hanging_once: tuple[str, SilentFirst], kafka_bootstrap: str
) -> None:
    bootstrap, front = hanging_once
    topic = unique("patient")
    made = await ensure_topics_patiently(
        bootstrap, [(topic, 2, {})], timeout=60, request_timeout_ms=2000
    )
    assert made == [topic]
    assert front.accepted >= 2, "the first, silent connection was not given up"
    assert await topic_overrides(kafka_bootstrap, topic) == {"min.insync.replicas": "1"}


async def test_a_broker_that_never_answers_fails_after_the_deadline_with_the_cause(
    kafka_bootstrap: str,
) -> None:
    async for bootstrap, front in _front(kafka_bootstrap, silent=1_000):
        with pytest.raises(KafkaConnectionError):
            await ensure_topics_patiently(
                bootstrap, [(unique("never"), 1, {})], timeout=5, request_timeout_ms=1000
            )
        assert front.accepted >= 2, "it did not try again before its deadline"
