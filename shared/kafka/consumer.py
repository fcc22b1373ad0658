"""The idempotent consumer runner (DESIGN §4 "Idempotent consumers" and "Failures").

Guarantees, per event:
- Effects happen once. The handler runs in a database transaction that also inserts the inbox
  row (consumer name, topic and producer, event id); a redelivered event conflicts on that key
  and its handler is skipped. The id is scoped by topic and producer, so one id used on two
  topics is two messages; the same id on another message of one scope (a foreign producer
  reusing ids) is a collision, dead-lettered with its reason instead of being swallowed.
  Offsets are committed to Kafka only after the transaction committed (and after a dead letter
  was acknowledged), so a crash at any point redelivers, never loses.
- Per-key order. A partition's records are handled one after another; a failing record is
  retried in place, so a key's later records never overtake it. Partitions of one batch run
  concurrently.
- The partition moves on. A record that cannot be handled goes to `<topic>.dlq` with the reason.

Each handler runs in a span continuing the trace its record carries (kafka/tracing.py); records
with more headers than ours (trace context, a foreign producer's own) are handled alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from shared.envelope import Envelope
from shared.errors import PermanentError
from shared.kafka.admin import ensure_topics
from shared.kafka.dead_letters import Reason, dead_letter_message, dead_letter_topic
from shared.kafka.decoding import Ignored, Outcome, Rejected, Subscription, Work, route, routes
from shared.kafka.offsets import Offsets
from shared.kafka.producer import DeliveryError, Producer
from shared.kafka.security import PLAINTEXT, KafkaSecurity
from shared.kafka.tracing import dead_lettering, processing
from shared.observability.logging import get_logger, message_context
from shared.observability.metrics import (
    DEAD_LETTERS,
    HANDLER_SECONDS,
    INBOX_COLLISIONS,
    MESSAGES_FAILED,
    MESSAGES_HANDLED,
    type_label,
)
from shared.ports import Claim, Inbox, InboxEntry, Transaction
from shared.retry import backoff_delay, is_outage

__all__ = ["ConsumerRunner", "ConsumerSettings", "InboxUnitOfWork", "Subscription"]


class InboxUnitOfWork(Transaction, Protocol):
    """What the runner needs of a unit of work (read-only, so every `UnitOfWork` fits)."""

    @property
    def inbox(self) -> Inbox: ...


U = TypeVar("U", bound=InboxUnitOfWork)


@dataclass(frozen=True)
class ConsumerSettings:
    max_poll_records: int = 500
    poll_timeout_ms: int = 1000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    max_attempts: int = 5  # handler failures before "handler-failed"; outages retry unbounded
    backoff_initial: float = 0.1  # seconds, doubled per attempt
    backoff_max: float = 5.0
    liveness_window: float = 60.0  # seconds without a poll before is_alive() turns False
    transaction_batch: int = 1  # records of one partition per database transaction
    # stop() waits this long for the record in hand, then cancels it: its transaction rolls
    # back and its offset stays uncommitted, so it is delivered again (the inbox makes that safe)
    stop_timeout: float = 30.0
    # static membership: a restarted instance takes its partitions back without a rebalance
    group_instance_id: str | None = None
    # the dead-letter topics start() creates: the service's KAFKA_REPLICATION_FACTOR and
    # KAFKA_MIN_INSYNC_REPLICAS, so a dead letter is as durable as the record it stands for
    replication_factor: int = 1
    min_insync_replicas: int = 1


class _Interrupted(Exception):
    """stop() or a rebalance: leave the current record unsettled (its offset uncommitted)."""


class IdCollisionError(PermanentError):
    """The event id was claimed before by a different message of the same topic and producer."""


def inbox_scope(record: Any, envelope: Envelope) -> str:
    """Where an event id must be unique: ids are the producers' own, so per topic and producer."""
    return f"{record.topic}|{envelope.producer}"


def fingerprint(envelope: Envelope) -> str:
    """What a message is, beyond its id: a redelivery matches, a reused id does not."""
    return f"{envelope.type}|{envelope.key}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner[Any]) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        await self._runner._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        self._runner._log.info("partitions assigned", partitions=sorted(map(str, assigned)))


class ConsumerRunner(Generic[U]):
    def __init__(
        self,
        *,
        name: str,
        bootstrap_servers: str,
        subscriptions: Sequence[Subscription[U]],
        uow_factory: Callable[[], U],
        settings: ConsumerSettings | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.name = name
        self._bootstrap = bootstrap_servers
        self._security = security
        self._routes = routes(list(subscriptions))
        self._topics = sorted({s.topic for s in subscriptions})
        self._uow_factory = uow_factory
        self._settings = settings or ConsumerSettings()
        self._consumer: Any = None
        self._dead_letters = Producer(
            bootstrap_servers, client_id=f"{name}.dead-letters", security=security
        )
        self._log = get_logger(__name__).bind(consumer=name)
        self._offsets = Offsets(name, self._log)
        self._interrupt = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._task: asyncio.Task[Any] | None = None
        self._loop_ended = asyncio.Event()
        self._last_poll = time.monotonic()

    async def start(self) -> None:
        """Create missing dead-letter topics, connect, subscribe (group id = name)."""
        dlq_specs = [(dead_letter_topic(t), 1, {"cleanup.policy": "delete"}) for t in self._topics]
        s = self._settings
        await ensure_topics(
            self._bootstrap,
            dlq_specs,
            replication_factor=s.replication_factor,
            min_insync_replicas=s.min_insync_replicas,
            security=self._security,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self.name,
            group_id=self.name,
            group_instance_id=s.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=s.max_poll_records,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            **self._security.aiokafka(),
        )
        try:
            await self._consumer.start()
            self._consumer.subscribe(self._topics, listener=_Rebalance(self))
            await self._dead_letters.start()
        except BaseException:
            # a started consumer left behind would keep its group membership, and with it
            # partitions that nobody polls
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
            await self._dead_letters.stop()
            raise

    async def run(self) -> None:
        """Consume until stop(). An unexpected error ends the loop (and liveness with it)."""
        if self._consumer is None:
            raise RuntimeError("start() the runner before run()")
        self._task = asyncio.current_task()
        try:
            while not self._stopping:
                batch = await self._poll()
                self._last_poll = time.monotonic()
                if batch:
                    await self._consume(batch)
                await self._offsets.report_lag(self._consumer)
        except Exception:
            self._log.exception("consumer loop died")
            raise
        finally:
            self._loop_ended.set()

    async def stop(self) -> None:
        """Finish the record in hand on each partition, commit what is settled, leave the group."""
        self._stopping = True
        self._interrupt.set()
        if self._task is not None:
            # the loop, not its task: a caller may await run() and then stop() in one task
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._loop_ended.wait(), self._settings.stop_timeout)
            if not self._loop_ended.is_set() and self._task is not asyncio.current_task():
                self._log.warning("handler did not finish in time; cancelling it")
                self._task.cancel()
                await asyncio.wait({self._task})
        if self._consumer is not None:
            await self._offsets.commit(self._consumer)
            await self._consumer.stop()
        await self._dead_letters.stop()

    def is_alive(self) -> bool:
        """False when the loop is not running or has not polled within the liveness window
        (a handler or an outage holding a partition longer than that counts as stuck)."""
        return (
            self._task is not None
            and not self._task.done()
            and time.monotonic() - self._last_poll < self._settings.liveness_window
        )

    def lag(self) -> int | None:
        """Records behind the end of the assigned partitions at the last poll (None before the
        first report, or while this instance holds no partition)."""
        return self._offsets.total_lag()

    async def _poll(self) -> dict[Any, list[Any]]:
        """Up to max_poll_records, shared between the partitions that have records in hand.
        aiokafka fills a batch from one partition's buffer before the next, which would leave
        the other partitions idle while that batch is handled."""
        s = self._settings
        assigned = self._consumer.assignment()
        share = max(1, s.max_poll_records // max(1, len(assigned)))
        batch: dict[Any, list[Any]] = await self._consumer.getmany(
            timeout_ms=s.poll_timeout_ms, max_records=share
        )
        for tp in assigned - batch.keys():
            batch.update(await self._consumer.getmany(tp, timeout_ms=0, max_records=share))
        return batch

    async def _consume(self, batch: dict[Any, list[Any]]) -> None:
        self._idle.clear()
        try:
            async with asyncio.TaskGroup() as group:
                for tp, records in batch.items():
                    group.create_task(self._consume_partition(tp, records))
            await self._offsets.commit(self._consumer)
        finally:
            self._idle.set()

    async def _consume_partition(self, tp: Any, records: list[Any]) -> None:
        outcomes: list[Outcome[U]] = [route(r, self._routes) for r in records]
        i = 0
        try:
            while i < len(outcomes) and not self._interrupt.is_set():
                first = outcomes[i]
                if isinstance(first, Rejected):
                    await self._dead_letter(first.record, first.reason, first.error)
                    i += 1
                else:
                    end, works = i, list[Work[U]]()
                    while end < len(outcomes) and not isinstance(outcomes[end], Rejected):
                        if isinstance(work := outcomes[end], Work):
                            if len(works) == self._settings.transaction_batch:
                                break
                            works.append(work)
                        end += 1
                    await self._handle(works)
                    for skipped in outcomes[i:end]:
                        if isinstance(skipped, Ignored):
                            labels = (self.name, tp.topic, type_label(skipped.type), "ignored")
                            MESSAGES_HANDLED.labels(*labels).inc()
                    i = end
                self._offsets.settle(tp, records[i - 1].offset + 1)
        except _Interrupted:
            return

    async def _handle(self, works: list[Work[U]]) -> None:
        if len(works) > 1:
            try:
                await self._apply(works)
                return
            except Exception as exc:
                # One failing record rolls back the batch's transaction; redo the batch one by
                # one so that only that record retries or is dead-lettered.
                self._log.info("batch transaction failed, one by one now", error=repr(exc))
        for work in works:
            await self._handle_one(work)

    async def _handle_one(self, work: Work[U]) -> None:
        attempt = failures = 0  # failures: the handler's own, outages excluded
        while True:
            attempt += 1
            try:
                await self._apply([work])
                return
            except PermanentError as exc:
                self._failed(work, exc, attempt)
                reason = (
                    Reason.ID_COLLISION if isinstance(exc, IdCollisionError) else Reason.REJECTED
                )
                with message_context(work.envelope):
                    await self._dead_letter(work.record, reason, str(exc) or repr(exc))
                return
            except Exception as exc:
                self._failed(work, exc, attempt)
                # outages must not use up the budget, or the first ordinary failure after a
                # long one (a deadlock as every consumer rushes back) is dead-lettered at once
                failures += not is_outage(exc)
                if failures >= self._settings.max_attempts:
                    error = f"{failures} failed attempts, last: {type(exc).__name__}: {exc}"
                    with message_context(work.envelope):
                        await self._dead_letter(work.record, Reason.HANDLER_FAILED, error)
                    return
                await self._pause(attempt)

    async def _apply(self, works: list[Work[U]]) -> None:
        """One transaction: the events' inbox claims (one round trip for all of them) and, for
        each event seen for the first time, its handler, in order."""
        started = time.perf_counter()
        outcomes: list[str] = []
        async with self._uow_factory() as uow:
            entries = [
                InboxEntry(
                    w.envelope.event_id, inbox_scope(w.record, w.envelope), fingerprint(w.envelope)
                )
                for w in works
            ]
            claims = await uow.inbox.claim_many(self.name, entries)
            for work, claim in zip(works, claims, strict=True):
                # the handler runs in the record's trace: what it appends to the outbox too
                with (
                    message_context(work.envelope),
                    processing(work.record, work.envelope, consumer=self.name) as span,
                ):
                    outcomes.append(await self._handle_claimed(uow, work, claim))
                    span.set_attribute("leadline.outcome", outcomes[-1])
        elapsed = time.perf_counter() - started
        for work, outcome in zip(works, outcomes, strict=True):
            type_ = type_label(work.envelope.type)
            MESSAGES_HANDLED.labels(self.name, work.record.topic, type_, outcome).inc()
            HANDLER_SECONDS.labels(self.name, type_).observe(elapsed)

    async def _handle_claimed(self, uow: U, work: Work[U], claim: Claim) -> str:
        envelope = work.envelope
        if claim is Claim.NEW:
            await work.subscription.handler(envelope, work.message, uow)
            return "applied"
        if claim is Claim.DUPLICATE:
            self._log.info("duplicate skipped")
            return "duplicate"
        INBOX_COLLISIONS.labels(self.name, work.record.topic).inc()
        self._log.error("event id reused by another message", fingerprint=fingerprint(envelope))
        scope = inbox_scope(work.record, envelope)
        raise IdCollisionError(
            f"event id {envelope.event_id} was handled before for another message of {scope!r};"
            f" this one ({fingerprint(envelope)}) is refused"
        )

    def _failed(self, work: Work[U], exc: Exception, attempt: int) -> None:
        type_ = type_label(work.envelope.type)
        MESSAGES_FAILED.labels(self.name, work.record.topic, type_).inc()
        with message_context(work.envelope):
            self._log.warning("handler failed", attempt=attempt, error=repr(exc))

    async def _dead_letter(self, record: Any, reason: Reason, error: str) -> None:
        message = dead_letter_message(record, reason=reason, error=error, consumer=self.name)
        attempt = 0
        with dead_lettering(record, consumer=self.name, reason=reason.value, error=error):
            while True:
                attempt += 1
                try:
                    await self._dead_letters.send_all([message])
                    break
                except (DeliveryError, KafkaError, OSError) as exc:
                    # never skip a record whose dead letter was not acknowledged
                    self._log.warning("dead letter not delivered", attempt=attempt, error=repr(exc))
                    await self._pause(attempt)
        DEAD_LETTERS.labels(self.name, record.topic, reason.value).inc()
        self._log.warning(
            "dead-lettered",
            reason=reason.value,
            error=error[:500],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )

    async def _pause(self, attempt: int) -> None:
        delay = backoff_delay(attempt, self._settings.backoff_initial, self._settings.backoff_max)
        try:
            await asyncio.wait_for(self._interrupt.wait(), delay)
        except TimeoutError:
            return
        raise _Interrupted

    async def _on_revoked(self, revoked: set[Any]) -> None:
        # Runs in aiokafka's coordination task, while the loop may be mid-batch: interrupt it,
        # wait until the records in hand are settled, and commit them before the new owner reads.
        self._interrupt.set()
        busy = not self._idle.is_set()
        self._log.info("partitions revoked", partitions=sorted(map(str, revoked)), busy=busy)
        try:
            await self._idle.wait()
            await self._offsets.commit(self._consumer)
        finally:
            self._offsets.forget(revoked)
            if not self._stopping:
                self._interrupt.clear()
