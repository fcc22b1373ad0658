"""Sends the queued answers the way a foreign provider would: its own client, not our relay.

confluent-kafka (librdkafka) with `acks=all` and idempotence, partitioned by librdkafka's
default `consistent_random` (CRC32 of the key) unless told `murmur2`: an order's answer can land
on another partition number than our murmur2 producers would pick, which is the point, since
the saga must not trust a foreign sender's partitioning.

At least once: an answer is marked sent only after Kafka acknowledged it, so a crash or a
failed batch sends it again on a later pass (same event id: inboxes drop the repeat). An answer
is never sent before it is due (`due_at`, set from the latency knob when it was decided).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from functools import partial

import asyncpg
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter

from shared.envelope import Envelope
from shared.kafka.security import PLAINTEXT, KafkaSecurity
from shared.kafka.tracing import DeferredSends
from shared.observability.logging import get_logger
from shared.observability.tracing import with_carrier
from shared.retry import is_outage
from simulators.payment_provider import store
from simulators.payment_provider.settings import Partitioner

ANSWERS = Counter(
    "leadline_simulator_payment_answers_total",
    "Answers the payment-provider simulator published and Kafka acknowledged (repeats too).",
    ["type"],
)
# librdkafka's names for the two hashes; `consistent_random` is its default
LIBRDKAFKA_PARTITIONER: dict[Partitioner, str] = {
    "crc32": "consistent_random",
    "murmur2": "murmur2_random",
}
log = get_logger(__name__)


class AnswerPublisher:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        bootstrap_servers: str,
        client_id: str,
        partitioner: Partitioner = "crc32",
        poll_interval: float = 0.05,
        batch_size: int = 100,
        delivery_timeout: float = 30.0,
        liveness_window: float = 120.0,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._pool = pool
        self._config: dict[str, object] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": LIBRDKAFKA_PARTITIONER[partitioner],
            "message.timeout.ms": int(delivery_timeout * 1000),
            "linger.ms": 5,
            "error_cb": _log_error,
            # the provider's own principal (secured profile), as librdkafka spells it
            **security.librdkafka(),
        }
        self._poll, self._batch = poll_interval, batch_size
        self._delivery_timeout = delivery_timeout
        self._window = liveness_window
        self._producer: Producer | None = None
        self._stopping = asyncio.Event()
        self._last_pass = time.monotonic()
        self._task: asyncio.Task[object] | None = None

    async def publish_due(self) -> int:
        """One pass over the answers due now; returns how many Kafka acknowledged."""
        due = await store.due_answers(self._pool, self._batch)
        if not due:
            return 0
        sent = await asyncio.to_thread(self._send, due)
        await store.mark_sent(self._pool, sent)
        if len(sent) < len(due):
            log.warning("answers not acknowledged, sent again later", unsent=len(due) - len(sent))
        return len(sent)

    async def run(self) -> None:
        """Publish until stop(); outages and refused batches are logged and retried."""
        self._task = asyncio.current_task()
        while not self._stopping.is_set():
            busy = False
            try:
                busy = await self.publish_due() == self._batch
            except Exception as exc:
                # anything else is a bug: the loop dies and readiness says so
                if not (is_outage(exc) or isinstance(exc, asyncpg.PostgresError)):
                    raise
                log.warning("publishing pass failed", error=repr(exc))
            self._last_pass = time.monotonic()
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None and self._task is not asyncio.current_task():
            await asyncio.wait({self._task})
        producer, self._producer = self._producer, None
        if producer is not None:
            # every answer in hand was acknowledged or failed already (flush in `_send`)
            await asyncio.to_thread(producer.flush, 5.0)

    def is_alive(self) -> bool:
        return (
            self._task is not None
            and not self._task.done()
            and time.monotonic() - self._last_pass < self._window
        )

    def _send(self, due: Sequence[store.DueAnswer]) -> list[int]:
        """Blocking (run in a thread): produce every answer, wait for the acknowledgements,
        return the ids of the acknowledged ones. A failure discards the producer, as an
        idempotent producer's sequence has a gap after one; the next pass starts a new one."""
        if self._producer is None:
            self._producer = Producer(self._config)
        producer = self._producer
        acked: list[int] = []
        failed: list[str] = []
        spans = DeferredSends()  # each answer's send in the trace of the request it answers

        def delivered(answer: store.DueAnswer, err: KafkaError | None, _: Message) -> None:
            # callbacks run inside flush(), on this thread
            if err is None:
                acked.append(answer.id)
                ANSWERS.labels(Envelope.from_bytes(answer.value).type).inc()
            else:
                failed.append(str(err))

        try:
            for answer in due:
                stored = with_carrier(Envelope.from_bytes(answer.value).headers(), answer.trace)
                headers: list[tuple[str, str | bytes | None]] = list(
                    spans.start(answer.topic, answer.key, stored)
                )
                producer.produce(
                    answer.topic,
                    value=answer.value,
                    key=answer.key.encode(),
                    headers=headers,
                    on_delivery=partial(delivered, answer),
                )
        except (KafkaException, BufferError) as exc:
            failed.append(repr(exc))
        pending = producer.flush(self._delivery_timeout)
        acknowledged = set(acked)
        spans.end_each([a.id in acknowledged for a in due], failed[0] if failed else None)
        if pending or failed:
            log.warning("kafka refused answers", pending=pending, errors=failed[:5])
            self._producer = None
            producer.purge()
            producer.flush(0)
        return acked


def _log_error(err: KafkaError) -> None:
    log.warning("kafka client error", error=str(err))
