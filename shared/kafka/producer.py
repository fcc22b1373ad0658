"""The one Kafka producer of a process (owned by the outbox relay, DESIGN §4).

`acks="all"` and idempotence are fixed, not settings. Delivery is awaited with a bound: with
idempotence on, aiokafka retries a batch forever while the partition has a leader, so without
our own deadline a relay could wait on a dead broker indefinitely.

Any failed or timed-out batch recreates the producer. A timeout is ambiguous (the records may
have landed), and after a failed batch the idempotent sequence of its partition has a gap that
fails every later batch there; a fresh producer id is the only clean way on. The caller then
re-sends from the first undelivered message, which may publish a record twice, never zero times.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.envelope import Headers
from shared.kafka.security import PLAINTEXT, KafkaSecurity
from shared.observability.logging import get_logger

_log = get_logger(__name__)

Compression = Literal["gzip", "snappy", "lz4", "zstd"]


@dataclass(frozen=True)
class ProducerSettings:
    request_timeout_ms: int = 10_000
    retry_backoff_ms: int = 200
    max_batch_size: int = 256 * 1024
    # 0: the relay hands over a whole batch before it yields to the sender, so records batch
    # anyway; lingering would only delay every relay batch, a NOTIFY-woken single row included
    linger_ms: int = 0
    compression_type: Compression | None = None
    delivery_timeout: float = 30.0  # seconds to wait for all acks of one send_all call
    close_timeout: float = 15.0  # more than request_timeout_ms: in-flight requests end first


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes | None  # None: a tombstone (only a dead letter or a re-drive carries one)
    headers: Headers


class DeliveryError(Exception):
    """Not every message of a `send_all` was acknowledged. The first `delivered` messages were;
    the rest may or may not have landed, so the caller re-sends them (the producer has been
    discarded; the next send starts a fresh one)."""

    def __init__(self, delivered: int, cause: BaseException) -> None:
        super().__init__(f"delivery stopped after {delivered} messages: {cause!r}")
        self.delivered = delivered
        self.cause = cause


def build_producer(
    bootstrap_servers: str,
    client_id: str,
    settings: ProducerSettings,
    security: KafkaSecurity = PLAINTEXT,
) -> Any:
    """An AIOKafkaProducer with every delivery-relevant setting explicit (not yet started)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=settings.request_timeout_ms,
        retry_backoff_ms=settings.retry_backoff_ms,
        max_batch_size=settings.max_batch_size,
        linger_ms=settings.linger_ms,
        compression_type=settings.compression_type,
        **security.aiokafka(),
    )


def _retrieve(fut: asyncio.Future[Any]) -> None:
    # records after the first failure fail too; DeliveryError already names the first error
    if not fut.cancelled():
        fut.exception()


class Producer:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        settings: ProducerSettings | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._security = security
        self._client_id = client_id
        self._settings = settings or ProducerSettings()
        self._producer: Any = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = build_producer(self._bootstrap, self._client_id, self._settings, self._security)
        try:
            await producer.start()
        except BaseException:
            await self._close(producer)
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._close(producer)

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message, then await every acknowledgement. Records of one partition keep
        their order (idempotent producer, one in-flight request per partition). Raises
        DeliveryError naming how many leading messages were acknowledged."""
        await self.start()
        futures: list[asyncio.Future[Any]] = []
        failure: BaseException | None = None
        try:
            for m in messages:
                futures.append(
                    await self._producer.send(m.topic, m.value, key=m.key, headers=m.headers)
                )
        except (KafkaError, OSError, TimeoutError) as exc:
            failure = exc
        delivered, first_error = await self._acknowledged(futures)
        if failure is None and delivered < len(messages):
            failure = first_error
        if failure is not None:
            for fut in futures[delivered:]:
                fut.add_done_callback(_retrieve)
            _log.warning(
                "kafka delivery failed, recreating the producer",
                delivered=delivered,
                total=len(messages),
                error=repr(failure),
            )
            producer, self._producer = self._producer, None
            await self._discard(producer)
            raise DeliveryError(delivered, failure) from failure

    async def _acknowledged(
        self, futures: Sequence[asyncio.Future[Any]]
    ) -> tuple[int, BaseException | None]:
        """How many leading futures succeeded within the delivery timeout, and why the next
        one did not. In order, so only the few futures still pending get a waiter."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.delivery_timeout
        for delivered, fut in enumerate(futures):
            if not fut.done():
                await asyncio.wait((fut,), timeout=max(deadline - loop.time(), 0.0))
            if not fut.done():
                timeout = self._settings.delivery_timeout
                return delivered, TimeoutError(f"record unacknowledged after {timeout}s")
            if fut.cancelled():
                return delivered, RuntimeError("record cancelled")
            if (error := fut.exception()) is not None:
                return delivered, error
        return len(futures), None

    async def _close(self, producer: Any) -> None:
        """Flush and close; discard after close_timeout. Never raises: a producer on its way
        out must not take its caller down."""
        try:
            await asyncio.wait_for(producer.stop(), self._settings.close_timeout)
        except Exception as exc:
            _log.warning("kafka producer did not close cleanly", error=repr(exc))
            await self._discard(producer)

    async def _discard(self, producer: Any) -> None:
        """Close without flushing. stop() flushes first, which never ends while the broker is
        away (idempotent batches retry forever), and what is still buffered is unwanted anyway:
        its rows are unsent in the outbox and go out again on the next producer. Requests in
        flight end within request_timeout_ms; per partition, idempotence lets a batch land only
        after every earlier one did, so what this producer delivered is a prefix in id order."""
        producer._closed = True  # what stop() sets first: later sends fail, no unclosed warning
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer._sender.close(), self._settings.close_timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.client.close(), self._settings.close_timeout)
