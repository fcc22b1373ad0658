"""Dead letters: messages a consumer could not handle, parked on `<topic>.dlq` (DESIGN §4).

A dead letter is the original record (key, value, headers unchanged) plus `dlq.*` headers that
say why and where from. They are listed and re-driven from here; nothing ever deletes them
(the topic's retention does).

    python -m shared.kafka.dead_letters list checkout.events.dlq
    python -m shared.kafka.dead_letters redrive checkout.events.dlq --reason handler-failed
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, cast

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.catalogue import DEAD_LETTER_SUFFIX
from shared.envelope import Headers
from shared.kafka.admin import security_from_env
from shared.kafka.producer import OutgoingMessage, Producer
from shared.kafka.security import PLAINTEXT, KafkaSecurity

HEADER_PREFIX = "dlq."
_ERROR_LIMIT = 4000  # characters of error text kept in a header


class Reason(StrEnum):
    INVALID_ENVELOPE = "invalid-envelope"  # not JSON, or not an envelope
    UNKNOWN_VERSION = "unknown-version"  # no model / upcaster chain for (type, version)
    SCHEMA_VIOLATION = "schema-violation"  # payload fails its model's validation
    UNKNOWN_TYPE = "unknown-type"  # a type no registry of ours knows (a typo, a foreign type)
    TYPE_MISMATCH = "type-mismatch"  # the `type` header names another type than the body
    UNHANDLED_COMMAND = "unhandled-command"  # a command topic's one consumer has no handler
    ID_COLLISION = "event-id-collision"  # an event id seen before, on another message
    MISROUTED = "misrouted"  # keyed so that it lands off its aggregate's partition
    REJECTED = "rejected"  # the handler raised PermanentError
    HANDLER_FAILED = "handler-failed"  # transient failures exhausted the retries


def dead_letter_topic(topic: str) -> str:
    """`<topic>.dlq`: the catalogue's `Topic.dead_letter`, and the same rule for topics outside
    it (prefixed test copies, upstream topics)."""
    return topic + DEAD_LETTER_SUFFIX


def dead_letter_message(
    record: Any, *, reason: Reason, error: str, consumer: str
) -> OutgoingMessage:
    """The dead letter of `record` (an aiokafka ConsumerRecord)."""
    original = [(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)]
    dlq: Headers = [
        ("dlq.reason", reason.value.encode()),
        ("dlq.error", error[:_ERROR_LIMIT].encode()),
        ("dlq.origin.topic", record.topic.encode()),
        ("dlq.origin.partition", str(record.partition).encode()),
        ("dlq.origin.offset", str(record.offset).encode()),
        ("dlq.consumer", consumer.encode()),
        ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
    ]
    return OutgoingMessage(
        topic=dead_letter_topic(record.topic),
        key=record.key,
        value=record.value,  # a tombstone stays null, so a re-drive reproduces it
        headers=original + dlq,
    )


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: the original was a tombstone
    headers: Headers  # the original record's headers, without the dlq.* ones
    reason: str
    error: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    consumer: str
    failed_at: datetime | None

    @property
    def event_id(self) -> str | None:
        """From the original `event_id` header (absent when the record was never ours)."""
        # a header may carry no value at all (Kafka allows it; upstream producers are not ours)
        return next(
            (v.decode() for k, v in self.headers if k == "event_id" and v is not None), None
        )

    @classmethod
    def from_record(cls, record: Any) -> DeadLetter:
        dlq = {
            k.removeprefix(HEADER_PREFIX): v.decode(errors="replace")
            for k, v in record.headers
            if k.startswith(HEADER_PREFIX)
        }
        failed_at = dlq.get("failed_at")
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=[(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)],
            reason=dlq.get("reason", ""),
            error=dlq.get("error", ""),
            origin_topic=dlq.get("origin.topic", record.topic.removesuffix(DEAD_LETTER_SUFFIX)),
            origin_partition=int(dlq.get("origin.partition", "-1")),
            origin_offset=int(dlq.get("origin.offset", "-1")),
            consumer=dlq.get("consumer", ""),
            failed_at=datetime.fromisoformat(failed_at) if failed_at else None,
        )


def _reader(bootstrap: str, group_id: str | None, security: KafkaSecurity) -> Any:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **security.aiokafka(),
    )


async def _assign_all(
    consumer: Any, bootstrap: str, topic: str, security: KafkaSecurity
) -> dict[Any, int]:
    """Assign every partition of `topic`; return each one's end offset, where reading stops."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.aiokafka())
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = [d for d in described if d["topic"] == topic and d["error_code"] == 0]
    if not found:
        raise LookupError(f"topic {topic!r} does not exist")
    tps = [TopicPartition(topic, p["partition"]) for p in found[0]["partitions"]]
    consumer.assign(tps)
    ends: dict[Any, int] = await consumer.end_offsets(tps)
    return ends


async def _unread(consumer: Any, ends: dict[Any, int]) -> list[Any]:
    return [tp for tp, end in ends.items() if await consumer.position(tp) < end]


async def list_dead_letters(
    bootstrap: str, topic: str, limit: int = 100, *, security: KafkaSecurity = PLAINTEXT
) -> list[DeadLetter]:
    """Up to `limit` dead letters of `topic` (a `.dlq` topic), oldest first per partition.
    Reads without a consumer group, so listing never moves anything."""
    consumer = _reader(bootstrap, None, security)
    await consumer.start()
    try:
        # no group: starts at the earliest
        ends = await _assign_all(consumer, bootstrap, topic, security)
        letters: list[DeadLetter] = []
        while len(letters) < limit and (pending := await _unread(consumer, ends)):
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                letters += [DeadLetter.from_record(r) for r in records if r.offset < ends[tp]]
        return letters[:limit]
    finally:
        await consumer.stop()


def redrive_group(dlq_topic: str) -> str:
    return f"leadline.redrive.{dlq_topic}"


async def redrive(
    bootstrap: str,
    dlq_topic: str,
    *,
    reason: str | None = None,
    consumer: str | None = None,
    event_ids: Collection[str] | None = None,
    where: Callable[[DeadLetter], bool] | None = None,
    group: str | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> int:
    """Re-produce dead letters to their origin topic with the original key, value and headers;
    return how many. Call it once the cause is fixed: the message then goes through its
    consumer again (same event id, so a consumer that did apply it skips it).

    Dead letters stay on the topic. What was already re-driven is tracked by a consumer group
    (`group`, default `leadline.redrive.<dlq_topic>`) whose offsets are committed only after the
    re-produced records were acknowledged: a second redrive starts after the first one's end
    and repeats nothing. Letters the filters passed over count as seen by that group too; to
    consider them again, pass another `group` name. A re-driven message lands after newer
    messages of its key on the origin topic."""

    def wanted(letter: DeadLetter) -> bool:
        return (
            (reason is None or letter.reason == reason)
            and (consumer is None or letter.consumer == consumer)
            and (event_ids is None or letter.event_id in event_ids)
            and (where is None or where(letter))
        )

    reader = _reader(bootstrap, group or redrive_group(dlq_topic), security)
    producer = Producer(bootstrap, client_id=f"redrive.{dlq_topic}", security=security)
    await reader.start()
    try:
        ends = await _assign_all(reader, bootstrap, dlq_topic, security)
        sent = 0
        while pending := await _unread(reader, ends):
            batch = await reader.getmany(*pending, timeout_ms=1000)
            # letters that arrived after the end offsets are left (uncommitted) for a next run
            kept = {tp: [r for r in rs if r.offset < ends[tp]] for tp, rs in batch.items()}
            letters = [DeadLetter.from_record(r) for rs in kept.values() for r in rs]
            out = [
                # a None key stays None (aiokafka sends "no key"); OutgoingMessage types only bytes
                OutgoingMessage(d.origin_topic, cast(bytes, d.key), d.value, d.headers)
                for d in letters
                if wanted(d)
            ]
            if out:
                await producer.send_all(out)
            sent += len(out)
            # only after the acknowledgements: a crash in between re-drives again, never loses
            await reader.commit({tp: rs[-1].offset + 1 for tp, rs in kept.items() if rs})
        return sent
    finally:
        await producer.stop()
        await reader.stop()


cli = typer.Typer(add_completion=False, help="List and re-drive dead letters.")
Bootstrap = Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS")]


@cli.command("list")
def list_cmd(topic: str, bootstrap: Bootstrap = "127.0.0.1:9092", limit: int = 50) -> None:
    """Print the dead letters of TOPIC (a .dlq topic), one per line."""
    letters = list_dead_letters(bootstrap, topic, limit, security=security_from_env())
    for d in asyncio.run(letters):
        typer.echo(
            f"{d.partition}:{d.offset} {d.reason} from {d.origin_topic}:{d.origin_partition}:"
            f"{d.origin_offset} consumer={d.consumer} event_id={d.event_id} "
            f"failed_at={d.failed_at} error={d.error[:200]!r}"
        )


@cli.command("redrive")
def redrive_cmd(
    topic: str,
    bootstrap: Bootstrap = "127.0.0.1:9092",
    reason: str | None = None,
    consumer: str | None = None,
    event_id: Annotated[list[str] | None, typer.Option()] = None,
    group: str | None = None,
) -> None:
    """Re-produce the dead letters of TOPIC not re-driven yet to their origin topics."""
    n = asyncio.run(
        redrive(
            bootstrap,
            topic,
            reason=reason,
            consumer=consumer,
            event_ids=event_id,
            group=group,
            security=security_from_env(),
        )
    )
    typer.echo(f"re-driven: {n}")


if __name__ == "__main__":
    cli()
