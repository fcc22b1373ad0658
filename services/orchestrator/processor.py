"""The order saga as a durable faust stream processor (DESIGN §2).

One agent reads every topic the saga consumes (co-partitioned by order id) and applies each
message to the saga's state, a faust Table keyed by order id and backed by its changelog topic,
one message at a time, so an order's messages never race. What makes it safe (each point a
trap faust leaves open, found on our broker):

- At least once, never exactly once: faust's exactly-once mode duplicated records after a crash.
  The saga remembers every message id it applied and re-sends the same commands (deterministic
  ids) when one comes again; downstream inboxes drop the repeats.
- A failed send is not lost: faust's commit flushes its producer but does not check that the
  sends succeeded. Commands go out through our own producer (acks=all, idempotent) and each
  send is awaited, and retried in place, before the agent moves on (and faust acks).
- An exception in an agent is acked and skipped by faust. Nothing leaves `_handle`: a failure is
  retried with backoff, then the message is dead-lettered and its saga marked failed.
- Upstream replies are re-keyed first: the payment provider's client may hash keys with CRC32.
  A small agent re-produces payments.events by order id with our partitioner into
  `orchestrator.payments`, which the saga agent reads with its other sources (what faust's
  group_by does, into a topic of ours, so one agent still sees all of an order's messages).
  A record whose key would put its saga on another partition than its order's is refused.
- Deadlines are messages: a timer announces passed deadlines on `orchestrator.deadlines`, only
  for partitions the agent has fully processed (deadlines.py), never by writing the table.
- faust's own topics (changelog, leader) are created before it starts: faust creating them
  races the broker's metadata and then drops records.

Tracing: each saga step is a span in the trace its message carries, and the commands it sends
carry that span's context; the saga keeps the context of its last change (`Saga.trace`), so a
deadline, which no message causes, continues the order's trace. Re-keyed replies keep the
provider's headers, its trace context included.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.contrib.asgi import bind_to_running_loop
from faust.events import Event as FaustEvent
from faust.streams import _current_event
from faust.types import TP
from faust.types.tuples import Message as FaustMessage
from prometheus_client import Counter, Histogram

from schemas.catalogue import DEAD_LETTER_SUFFIX, SAGA_PARTITIONS
from schemas.orchestrator.v1 import SagaDeadlinePassed
from services.orchestrator.consumers import Topics, subscriptions
from services.orchestrator.credentials import faust_credentials
from services.orchestrator.datadir import forget_another_clusters_state
from services.orchestrator.deadlines import Deadlines, caught_up, partition_of
from services.orchestrator.lag import LagReporter
from services.orchestrator.pipeline import Pipeline
from services.orchestrator.saga import PRODUCER, Incoming, Saga, applied_before, apply, fail
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.table import DurableTable
from services.orchestrator.transport import Transport
from services.orchestrator.view import ViewWriter
from shared.envelope import Envelope, deterministic_id
from shared.kafka.admin import ensure_topics
from shared.kafka.dead_letters import Reason, dead_letter_message
from shared.kafka.decoding import Ignored, Rejected, Subscription, route, routes
from shared.kafka.producer import DeliveryError, OutgoingMessage, Producer
from shared.kafka.tracing import DeferredSends, dead_lettering, processing
from shared.observability.logging import get_logger, message_context
from shared.observability.metrics import DEAD_LETTERS, MESSAGES_HANDLED, type_label
from shared.observability.tracing import current_carrier, tag, with_carrier, with_current_context
from shared.retry import backoff_delay, is_outage

log = get_logger(__name__)

TRANSITIONS = Counter(
    "leadline_saga_transitions_total", "Messages the saga applied, by type.", ["type"]
)
STEP_SECONDS = Histogram(
    "leadline_saga_step_seconds",
    "Time from a saga's previous step to this one, by the message that made it.",
    ["type"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

STALLS = Counter(
    "leadline_saga_stalled_partitions_total",
    "Held partitions with records waiting and none delivered within the stall window, read"
    " again from the next offset to process.",
    ["topic"],
)
SKIPPED = Counter(
    "leadline_saga_records_skipped_total",
    "Records faust's stream jumped over (past this worker's own or the recorded progress of a"
    " source partition) that the processor read from Kafka itself and applied.",
    ["topic"],
)

_SENDING_FAILURES = (DeliveryError, KafkaError, OSError, TimeoutError)


@contextlib.contextmanager
def standing_in_for_faust(app: faust.App, record: Record) -> Iterator[None]:
    """faust's table (its store and its changelog) takes the partition to write from the event
    its stream is processing, and refuses a write without one. The stall watchdog applies
    records outside the stream: for each, it stands in an event for that very record."""
    message = FaustMessage(
        record.topic,
        record.partition,
        record.offset,
        time.time(),
        0,
        record.headers,
        record.key,
        record.value,
        None,
    )
    event = FaustEvent(app, record.key, record.value, record.headers, message)
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


@dataclass(frozen=True)
class Record:
    """The parts of a faust message the backbone's routing and dead letters read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, message: Any) -> Record:
        headers = message.headers or []
        items = headers.items() if isinstance(headers, dict) else headers
        return cls(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            [(k, v) for k, v in items],
        )


class Processor:
    """The faust app as a ServiceRuntime worker: run() until stop(), alive while it progresses."""

    def __init__(self, settings: OrchestratorSettings, view: ViewWriter) -> None:
        s = self._settings = settings
        self._view = view
        self.topics = Topics.with_prefix(s.topic_prefix)
        subscribed = subscriptions(self.topics, self._step)
        self._routes = routes(subscribed)
        # the provider's records are checked where they arrive, as the saga agent checks them:
        # a bad one is dead-lettered on the provider's own topic, naming its own offset
        self._upstream_routes = routes(
            [
                Subscription(self.topics.payments_upstream, sub.message, sub.handler)
                for sub in subscribed
                if sub.topic == self.topics.payments
            ]
        )
        self._producer = Producer(
            s.kafka_bootstrap_servers,
            client_id=f"{s.faust_id}.commands",
            security=s.kafka_security,
        )
        self.deadlines = Deadlines(SAGA_PARTITIONS)
        self.app = faust.App(
            s.faust_id,
            broker=[f"kafka://{server}" for server in s.kafka_bootstrap_servers.split(",")],
            broker_credentials=faust_credentials(s.kafka_security),
            store="rocksdb://" if s.store == "rocksdb" else "memory://",
            datadir=str(s.data_dir / s.faust_id),
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            topic_replication_factor=s.kafka_replication_factor,
            topic_partitions=SAGA_PARTITIONS,
            table_standby_replicas=s.standby_replicas,
            broker_session_timeout=s.session_timeout,
            broker_heartbeat_interval=min(3.0, s.session_timeout / 3),
            broker_commit_interval=1.0,
            web_enabled=False,
            Table=DurableTable,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.app.transport = Transport(self.app.conf.broker_consumer, self.app)
        self.app.transport.before_commit = self._drain
        sources = self.app.topic(*self.topics.sources, key_type=bytes, value_type=bytes)
        upstream = self.app.topic(self.topics.payments_upstream, key_type=bytes, value_type=bytes)
        table = self.app.Table(
            "sagas",
            partitions=SAGA_PARTITIONS,
            key_type=str,  # the app's raw serializers: the order id and the saga's JSON as bytes
            value_type=bytes,
        )
        assert isinstance(table, DurableTable)  # conf.Table above
        self.table = table
        self._pipeline = Pipeline(table, self._write_again, self._send)
        self._pipeline_task: asyncio.Task[None] | None = None
        self.app.agent(sources, name="saga")(self._saga_agent)
        self.app.agent(upstream, name="rekey")(self._rekey_agent)
        self.app.timer(s.deadline_scan_seconds, name="deadlines")(self._announce_deadlines)
        self.lag = LagReporter(s.faust_id, s.kafka_bootstrap_servers, s.kafka_security)
        self.app.timer(s.lag_report_seconds, name="lag")(self._report_lag)
        self._done: dict[tuple[str, int], int] = {}  # next offset to process, per source
        # the next offset the agent should see, per source held since the last rebalance
        self._expected: dict[tuple[str, int], int] = {}
        self._delivered: dict[tuple[str, int], float] = {}  # when a source last gave a record
        self._unrecorded: set[tuple[str, int]] = set()  # no progress in PostgreSQL yet
        self._applying = asyncio.Lock()
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self._indexed: set[int] = set()
        self._progress = time.monotonic()
        self._started = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def internal_topics(self) -> list[tuple[str, int, dict[str, str]]]:
        """faust's changelog and leader topics, and the re-keyed payments topic (what faust's
        group_by would make itself; an implementation detail, so not in the catalogue)."""
        app_id, delete = self._settings.faust_id, {"cleanup.policy": "delete"}
        return [
            (f"{app_id}-sagas-changelog", SAGA_PARTITIONS, {"cleanup.policy": "compact"}),
            (f"{app_id}-__assignor-__leader", 1, {"cleanup.policy": "compact"}),
            (self.topics.payments, SAGA_PARTITIONS, delete),
            (self.topics.payments + DEAD_LETTER_SUFFIX, 1, delete),
        ]

    async def run(self) -> None:
        self._task = asyncio.current_task()
        bind_to_running_loop(self.app)
        self.app.finalize()
        self._settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes one level only
        # faust's own topics are made here, before faust would make them without
        # min.insync.replicas: it leaves a topic that exists as it is
        s = self._settings
        await ensure_topics(
            s.kafka_bootstrap_servers,
            self.internal_topics,
            replication_factor=s.kafka_replication_factor,
            min_insync_replicas=s.kafka_min_insync_replicas,
            security=s.kafka_security,
        )
        await forget_another_clusters_state(s)
        await self._producer.start()
        self._pipeline_task = asyncio.create_task(self._pipeline.run(), name="saga-pipeline")
        # returns once the table is recovered from its changelog (may take a while)
        await self.app.start()
        self._started.set()
        log.info("saga processor started", app_id=self._settings.faust_id)
        await self._stopping.wait()

    async def stop(self) -> None:
        self._stopping.set()
        await self.app.stop()  # its last commit drains the pipeline first
        if self._pipeline_task is not None:
            self._pipeline_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pipeline_task
        await self._producer.stop()
        await self.lag.close()
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            await asyncio.wait({task}, timeout=30)

    def ready(self) -> bool:
        """Started, and the table recovered (the agent is processing)."""
        return self._started.is_set() and not self.app.in_recovery

    def is_alive(self) -> bool:
        """False when run() ended, or when records wait on held partitions and none was
        processed within the liveness window (a worker stuck after a rebalance)."""
        if self._task is None or self._task.done():
            return False
        if time.monotonic() - self._progress < self._settings.liveness_window:
            return True
        return not self._lagging()

    # ------------------------------------------------------------ the saga agent

    async def _saga_agent(self, stream: Any) -> None:
        async for event in stream.events():
            record = Record.of(event.message)
            self._delivered[(record.topic, record.partition)] = time.monotonic()
            async with self._applying:  # one record at a time, the stall watchdog's too
                for missed in await self._skipped_before(record):
                    await self._apply_record(missed)
                await self._apply_record(record)

    async def _apply_record(self, record: Record) -> None:
        await self._handle(record)
        key, next_offset = (record.topic, record.partition), record.offset + 1
        self._expected[key] = max(self._expected.get(key, 0), next_offset)
        self._done[key] = next_offset
        # recorded for a successor once the record's effects are durable, not before: it
        # trusts this progress over faust's offsets, and would never apply a record a crash
        # cut off before its saga's changelog write or commands were acknowledged
        self._pipeline.then(lambda: self._view.applied(record.topic, record.partition, next_offset))
        self._progress = time.monotonic()

    async def _skipped_before(self, record: Record) -> list[Record]:
        """The records of the partition before `record` that no agent applied, read from Kafka
        by a consumer of our own: faust has handed the stream a record past them (within a
        partition held since the last rebalance, or after its group offset was committed past
        them; transport.py says how). Where the agents have got to is known here for the
        former, and from the saga progress in PostgreSQL (written behind every worker, once a
        record's effects are durable) for the latter. Applied before `record`, in their order;
        none when nothing was skipped."""
        key = (record.topic, record.partition)
        expected = self._expected.get(key)
        if expected is None:
            expected = await self._recorded_progress(record.topic, record.partition)
            self._expected[key] = record.offset if expected is None else expected
        if expected is None or record.offset <= expected:
            return []
        SKIPPED.labels(record.topic).inc(record.offset - expected)
        log.error(
            "records skipped by the stream, read again",
            topic=record.topic,
            partition=record.partition,
            expected=expected,
            offset=record.offset,
        )
        return await self._read_range_retrying(
            record.topic, record.partition, expected, record.offset
        )

    async def _read_range_retrying(
        self, topic: str, partition: int, start: int, end: int
    ) -> list[Record]:
        attempt = 0
        while True:  # the broker away: wait it out, as a command's send does
            attempt += 1
            try:
                return await self._read_range(topic, partition, start, end)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("skipped records not read, retrying", attempt=attempt, error=repr(exc))
                await asyncio.sleep(backoff_delay(attempt, 0.1, 5.0))

    async def _recorded_progress(self, topic: str, partition: int) -> int | None:
        try:
            return await self._view.progress(topic, partition)
        except Exception as exc:  # PostgreSQL away: go on without the check, as before it
            log.warning("saga progress not read", topic=topic, error=repr(exc))
            return None

    async def _read_range(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        """The records at offsets start..end-1 (those still on the broker)."""
        tp = TopicPartition(topic, partition)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            client_id=f"{self._settings.faust_id}.skipped",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._settings.kafka_security.aiokafka(),
        )
        await reader.start()
        found: list[Record] = []
        try:
            reader.assign([tp])
            reader.seek(tp, start)
            quiet_until = time.monotonic() + 30.0
            while await reader.position(tp) < end:
                batch = await reader.getmany(tp, timeout_ms=1000, max_records=end - start)
                if batch:
                    quiet_until = time.monotonic() + 30.0
                elif time.monotonic() > quiet_until:
                    raise TimeoutError(f"nothing read from {topic}[{partition}] in 30 s")
                found += [
                    Record(m.topic, m.partition, m.offset, m.key, m.value, list(m.headers))
                    for m in batch.get(tp, [])
                    if m.offset < end
                ]
        finally:
            await reader.stop()
        return found

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # after a rebalance a partition may come back further on (another worker read it)
        self._expected.clear()
        self._delivered.clear()
        self._unrecorded.clear()

    async def _handle(self, record: Record) -> None:
        """Never raises: faust would ack and skip the record."""
        outcome = route(record, self._routes)
        if isinstance(outcome, Ignored):
            MESSAGES_HANDLED.labels(self.app.conf.id, record.topic, outcome.type, "ignored").inc()
            return
        if isinstance(outcome, Rejected):
            await self._dead_letter(record, outcome.reason, outcome.error)
            return
        order_id: str = outcome.message.order_id  # type: ignore[attr-defined]
        if partition_of(order_id, SAGA_PARTITIONS) != record.partition:
            error = (
                f"order {order_id} belongs on partition {partition_of(order_id, SAGA_PARTITIONS)}"
            )
            await self._dead_letter(record, Reason.MISROUTED, error)
            return
        with message_context(outcome.envelope):
            await self._apply_with_retries(record, outcome.envelope, outcome.message, order_id)

    async def _apply_with_retries(
        self, record: Record, envelope: Envelope, message: Any, order_id: str
    ) -> None:
        attempt = failures = 0
        while True:
            attempt += 1
            try:
                # each attempt a span in the trace the message carries; its commands continue it
                with processing(
                    record, envelope, consumer=self._settings.faust_id, name=f"saga {envelope.type}"
                ):
                    await self._step(envelope, message, record)
                return
            except Exception as exc:
                log.warning("saga step failed", attempt=attempt, error=repr(exc))
                # Kafka or the network away: wait it out (liveness reports a long stall)
                failures += not (is_outage(exc) or isinstance(exc, _SENDING_FAILURES))
                if failures >= self._settings.max_attempts:
                    error = f"{failures} failed attempts, last: {type(exc).__name__}: {exc}"
                    await self._give_up(record, envelope, message, order_id, error)
                    return
                await asyncio.sleep(backoff_delay(attempt, 0.1, 5.0))

    async def _step(self, envelope: Envelope, message: Any, record: Any) -> None:
        order_id: str = message.order_id
        before = self._load(order_id)
        now = datetime.now(UTC)
        incoming = Incoming(str(envelope.event_id), message, now)
        after, commands = apply(before, incoming, self._settings.timeouts)
        outcome = "ignored"  # a message this saga's state does not take (the saga is past it)
        if after is not None and after != before:
            outcome = "applied"
            # a deadline announced later continues the trace of the step that set it
            after = after.model_copy(update={"trace": current_carrier()})
            # the table first (the pipeline sends the commands once the write is
            # acknowledged): a crash before the sends re-processes this message, and the
            # saga, finding its id applied, sends the very same commands again
            self._persist(after, record)
            self._observe(before, after, message.TYPE, now)
        elif after is not None and applied_before(before, incoming.message_id):
            outcome = "duplicate"
            # a message applied before comes again: the local table may hold a state whose
            # changelog write a crash cut off (faust writes the store first); written again,
            # so a worker rebuilding the saga from the changelog finds it
            self._persist(after, record)
        log.info(
            "saga step",
            order_id=order_id,
            before=before.status.value if before else None,
            after=after.status.value if after else None,
            changed=after != before,
            commands=[c.type for c in commands],
        )
        tag(
            **{
                "leadline.saga.before": before.status.value if before else "",
                "leadline.saga.after": after.status.value if after else "",
                "leadline.saga.commands": [c.type for c in commands],
            }
        )
        if commands:
            self._pipeline.send(
                record,
                [
                    OutgoingMessage(
                        self._settings.topic(c.topic),
                        order_id.encode(),
                        wrapped.to_bytes(),
                        with_current_context(wrapped.headers()),
                    )
                    for c in commands
                    for wrapped in [
                        Envelope.wrap(
                            c.message(),
                            key=order_id,
                            producer=PRODUCER,
                            caused_by=envelope,
                            event_id=c.event_id,
                        )
                    ]
                ],
            )
        MESSAGES_HANDLED.labels(self.app.conf.id, record.topic, message.TYPE, outcome).inc()

    def _persist(self, saga: Saga, record: Record) -> None:
        """The saga in the table; the pipeline sees its changelog write acknowledged before the
        commands staged after it go out, and before faust commits past `record`."""
        self.table[saga.order_id] = saga.model_dump_json().encode()
        self._pipeline.wrote(saga.order_id, record)

    def _write_again(self, order_id: str, record: Record) -> None:
        """A changelog write failed: the table's value (the newest) written again, to the
        changelog partition of the record that wrote it."""
        stored = self.table.get(order_id)
        if stored is not None:
            with standing_in_for_faust(self.app, record):
                self.table[order_id] = stored

    async def _drain(self) -> None:
        await self._pipeline.drain()

    def _load(self, order_id: str) -> Saga | None:
        stored = self.table.get(order_id)
        return None if stored is None else Saga.model_validate_json(stored)

    def _observe(self, before: Saga | None, after: Saga, type_: str, now: datetime) -> None:
        TRANSITIONS.labels(type_label(type_)).inc()
        if before is not None and before.history:
            elapsed = (now - before.history[-1].at).total_seconds()
            STEP_SECONDS.labels(type_label(type_)).observe(max(elapsed, 0.0))
        self.deadlines.track(after)
        self._view.put(after)

    async def _give_up(
        self, record: Record, envelope: Envelope, message: Any, order_id: str, error: str
    ) -> None:
        saga = self._load(order_id)
        if saga is not None:
            failed = fail(saga, Incoming(str(envelope.event_id), message, datetime.now(UTC)), error)
            self._persist(failed, record)
            self.deadlines.track(failed)
            self._view.put(failed)
        log.error("saga failed", order_id=order_id, error=error)
        await self._dead_letter(record, Reason.HANDLER_FAILED, error)

    # ------------------------------------------------------------ re-keying upstream replies

    async def _rekey_agent(self, stream: Any) -> None:
        async for event in stream.events():
            await self._rekey(Record.of(event.message))

    async def _rekey(self, record: Record) -> None:
        outcome = route(record, self._upstream_routes)
        if isinstance(outcome, Rejected):
            await self._dead_letter(record, outcome.reason, outcome.error)
            return
        if isinstance(outcome, Ignored):  # a known type no saga step reads
            MESSAGES_HANDLED.labels(self.app.conf.id, record.topic, outcome.type, "ignored").inc()
            return
        order_id: str = outcome.message.order_id  # type: ignore[attr-defined]
        # the value and headers as the provider sent them, keyed by the order
        forwarded = OutgoingMessage(
            self.topics.payments, order_id.encode(), record.value, record.headers
        )
        # through the pipeline, in order, not awaited here: faust commits the provider's offset
        # only once the copy is acknowledged (before_commit drains the pipeline)
        self._pipeline.send(record, [forwarded])
        MESSAGES_HANDLED.labels(
            self.app.conf.id, record.topic, outcome.envelope.type, "applied"
        ).inc()

    # ------------------------------------------------------------ deadlines

    async def _announce_deadlines(self) -> None:
        if not self.ready():
            return
        try:
            await self._index_held_partitions()
            await self._unstall()
            due = self.deadlines.due(datetime.now(UTC), self._caught_up())
            if not due:
                return
            messages = []
            # no message causes a deadline: each continues its saga's trace, from the step
            # that set it, so a timed-out order's compensation stays in the order's trace
            sends = DeferredSends()
            for d in due:
                passed = SagaDeadlinePassed(
                    order_id=d.order_id, status=d.status, deadline=d.deadline
                )
                envelope = Envelope.wrap(
                    passed,
                    key=d.order_id,
                    producer=PRODUCER,
                    event_id=deterministic_id(PRODUCER, d.order_id, "deadline", str(d.deadline)),
                )
                saga = self._load(d.order_id)
                stored = with_carrier(envelope.headers(), saga.trace if saga else {})
                messages.append(
                    OutgoingMessage(
                        self.topics.deadlines,
                        d.order_id.encode(),
                        envelope.to_bytes(),
                        sends.start(self.topics.deadlines, d.order_id, stored),
                    )
                )
            sent = 0
            try:
                await self._producer.send_all(messages)
                sent = len(messages)
            finally:
                sends.end(sent)
            log.info("deadlines announced", count=len(messages))
        except Exception as exc:  # a timer that raises stops for good: log and try next tick
            log.warning("deadline scan failed", error=repr(exc))

    async def _report_lag(self) -> None:
        if not self.ready():
            return
        held = self._held((*self.topics.sources, self.topics.payments_upstream))
        try:
            await self.lag.report(held)
        except Exception as exc:  # a timer that raises stops for good: log and try next tick
            log.warning("consumer lag not reported", error=repr(exc))

    def _held(self, topics: Iterable[str] = ()) -> set[tuple[str, int]]:
        """The partitions of `topics` (default: the saga agent's sources) held here."""
        wanted = set(topics or self.topics.sources)
        return {
            (tp.topic, tp.partition)
            for tp in self.app.assignor.assigned_actives()
            if tp.topic in wanted
        }

    async def _index_held_partitions(self) -> None:
        """Track the deadlines of sagas on partitions assigned since the last look (the table
        holds them once recovered), and write them to the saga view again; forget those of
        partitions given away. Where the agent has
        processed nothing yet, the group's committed offset says how far it is done."""
        source_tps = self._held()
        held = {p for _, p in source_tps}
        if held == self._indexed:
            return
        for tp in [tp for tp in self._done if tp not in source_tps]:
            del self._done[tp]
        await self._learn_committed(source_tps - self._done.keys())
        self.deadlines.keep_only(held)
        for order_id, stored in list(self.table.items()):
            # the memory store still holds keys of partitions moved away: skip them
            if partition_of(order_id, SAGA_PARTITIONS) in held - self._indexed:
                saga = Saga.model_validate_json(stored)
                self.deadlines.track(saga)
                # the worker before may have died with the view's last writes unflushed
                self._view.put(saga)
        self._indexed = held

    async def _learn_committed(self, tps: set[tuple[str, int]]) -> None:
        if not tps:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            **self._settings.kafka_security.aiokafka(),
        )
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(self.app.conf.id)
        finally:
            await admin.close()
        for tp, meta in committed.items():
            key = (tp.topic, tp.partition)
            if key in tps and meta.offset >= 0:
                self._done.setdefault(key, meta.offset)

    async def _unstall(self) -> None:
        """Apply what waits on a held partition from which nothing came for `stall_seconds`:
        faust's fetching can stall a partition, or its group offset can run past records no
        agent applied, and then no later record reveals the gap (transport.py says how). Where
        the agents have got to is their own record (`_applied_up_to`), not faust's offsets. The
        records up to the high watermark are read with a consumer of our own and applied, then
        faust's consumer is sent back to them (they come again: the saga drops what it applied),
        so that its offsets heal."""
        if self.app.rebalancing or self.app.in_recovery or not self.app.flow_control.is_active():
            return
        now, window = time.monotonic(), self._settings.stall_seconds
        consumer: Any = self.app.consumer
        stalled: dict[tuple[str, int], tuple[int, int]] = {}
        for key in self._held():
            seen = self._delivered.setdefault(key, now)  # held since: counts as a delivery
            hw = consumer.highwater(TP(*key))
            if hw is None or now - seen < window:
                continue
            start = await self._applied_up_to(key)
            if start is not None and start < hw:
                stalled[key] = (start, hw)
        for (topic, partition), (start, end) in stalled.items():
            log.warning(
                "stalled partition read again",
                topic=topic,
                partition=partition,
                offset=start,
                highwater=end,
            )
            STALLS.labels(topic).inc()
            async with self._applying:
                for record in await self._read_range_retrying(topic, partition, start, end):
                    with standing_in_for_faust(self.app, record):
                        await self._apply_record(record)
            self._delivered[(topic, partition)] = time.monotonic()
        if not stalled:
            return
        consumer.stop_flow()  # no record of a batch in hand slips in while the seeks happen
        try:
            for (topic, partition), (start, _) in stalled.items():
                await consumer.seek(TP(topic, partition), start)
        finally:
            consumer.resume_flow()

    async def _applied_up_to(self, key: tuple[str, int]) -> int | None:
        """The next offset to apply: this worker's own, else the one recorded in PostgreSQL,
        else faust's (processed or committed); None when nothing is known."""
        if key not in self._expected and key not in self._unrecorded:
            recorded = await self._recorded_progress(*key)
            if recorded is None:
                self._unrecorded.add(key)  # read once per assignment, not on every tick
            else:
                self._expected[key] = recorded
        if key in self._expected:
            return self._expected[key]
        consumer: Any = self.app.consumer
        committed: int | None = consumer._committed_offset.get(TP(*key))
        return self._done.get(key, committed)

    def _caught_up(self) -> set[int]:
        held = self._held()
        consumer: Any = self.app.consumer
        highwater: dict[tuple[str, int], int | None] = {}
        done: dict[tuple[str, int], int] = {}
        for topic, partition in held:
            tp = TP(topic, partition)
            hw = consumer.highwater(tp)
            highwater[(topic, partition)] = hw if hw is not None and hw >= 0 else None
            committed = consumer._committed_offset.get(tp) or 0
            # not known (neither processed nor committed): not caught up, never a guess
            known = self._done.get((topic, partition), committed if committed else -1)
            # what the agents applied, where known, over faust's offsets (which have run
            # past records no agent applied)
            applied = self._expected.get((topic, partition))
            done[(topic, partition)] = max(known, committed) if applied is None else applied
        return caught_up(held, highwater, done)

    def _lagging(self) -> bool:
        return bool(self._held()) and {p for _, p in self._held()} != self._caught_up()

    # ------------------------------------------------------------ sending

    async def _send(self, messages: list[OutgoingMessage]) -> None:
        """Every message acknowledged, or retried until it is: a command is never dropped."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._producer.send_all(messages)
                return
            except DeliveryError as exc:
                messages = messages[exc.delivered :]
                log.warning("send failed, retrying", attempt=attempt, error=repr(exc))
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("send failed, retrying", attempt=attempt, error=repr(exc))
            await asyncio.sleep(backoff_delay(attempt, 0.1, 5.0))

    async def _dead_letter(self, record: Record, reason: Reason, error: str) -> None:
        consumer = self._settings.faust_id
        with dead_lettering(record, consumer=consumer, reason=reason.value, error=error):
            await self._send(
                [dead_letter_message(record, reason=reason, error=error, consumer=consumer)]
            )
        DEAD_LETTERS.labels(consumer, record.topic, reason.value).inc()
        log.warning(
            "dead-lettered",
            reason=reason.value,
            error=error[:500],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
