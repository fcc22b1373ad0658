"""Reading Kafka for an operator: topics, their offsets, consumer groups' lag, and records.

Nothing here joins a consumer group or commits an offset: every reader assigns partitions
itself (group_id None), so looking never moves a service's position. Readers are
`read_committed`, as every Leadline consumer is, so end offsets and lag are what the services
see (a transaction's records count once it commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from schemas.catalogue import TOPICS
from services.cli.errors import CliError, kafka_unreachable
from services.cli.settings import CliSettings
from shared.kafka.security import KafkaSecurity

REQUEST_TIMEOUT_MS = 10_000


@contextlib.asynccontextmanager
async def _started(
    bootstrap: str, client: Any, stop: Callable[[], Awaitable[Any]]
) -> AsyncIterator[Any]:
    """`client` started (a broker it cannot reach: one clear error), stopped on the way out."""
    try:
        await client.start()
    except KafkaConnectionError as exc:
        await stop()
        raise kafka_unreachable(bootstrap, exc) from None
    try:
        yield client
    finally:
        await stop()


@contextlib.asynccontextmanager
async def admin(bootstrap: str, security: KafkaSecurity) -> AsyncIterator[Any]:
    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, **security.aiokafka()
    )
    async with _started(bootstrap, client, client.close) as started:
        yield started


@contextlib.asynccontextmanager
async def reader(bootstrap: str, security: KafkaSecurity) -> AsyncIterator[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        **security.aiokafka(),
    )
    async with _started(bootstrap, consumer, consumer.stop) as started:
        yield started


async def topics_under_prefix(settings: CliSettings) -> list[str]:
    """Every topic of this deployment (physical names under the topic prefix), Kafka's own
    internal topics left out."""
    async with admin(settings.kafka_bootstrap_servers, settings.kafka_security) as client:
        names: list[str] = await client.list_topics()
    return sorted(
        n for n in names if n.startswith(settings.topic_prefix) and not n.startswith("__")
    )


async def catalogue(
    settings: CliSettings, *, topics: bool = True, dead_letters: bool = True
) -> list[str]:
    """The catalogue's topics and/or their dead-letter topics that the broker has (physical
    names, catalogue order). Only these by default: a broker may hold other deployments' topics
    (test copies under other prefixes), which an empty prefix would not tell apart."""
    names = [
        n
        for t in TOPICS
        for n, wanted in ((t.name, topics), (t.dead_letter, dead_letters))
        if wanted
    ]
    present = set(await topics_under_prefix(settings))
    return [settings.topic(n) for n in names if settings.topic(n) in present]


async def partitions(
    bootstrap: str, physical: Iterable[str], *, security: KafkaSecurity
) -> dict[str, list[int]]:
    """Each topic's partitions; a topic the broker does not have is a CliError naming it."""
    wanted = list(physical)
    async with admin(bootstrap, security) as client:
        described = await client.describe_topics(wanted)
    found = {
        t["topic"]: sorted(p["partition"] for p in t["partitions"])
        for t in described
        if t["error_code"] == 0 and t["partitions"]
    }
    missing = [n for n in wanted if n not in found]
    if missing:
        raise CliError(f"no topic {', '.join(missing)} on the broker at {bootstrap}")
    return found


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    start: int  # the first offset still kept
    end: int  # the next offset to be written (the last stable offset)


@dataclass(frozen=True)
class GroupLag:
    group: str
    committed: dict[int, int]  # partition -> next offset the group will read; absent: none yet
    lag: dict[int, int]  # partition -> records between the group's position and the end

    @property
    def total(self) -> int:
        return sum(self.lag.values())


@dataclass(frozen=True)
class TopicOffsets:
    topic: str  # catalogue name (the prefix taken off)
    physical: str
    partitions: list[PartitionOffsets]
    groups: list[GroupLag] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(p.end - p.start for p in self.partitions)


async def topic_offsets(settings: CliSettings, physical: list[str]) -> list[TopicOffsets]:
    """Partitions and offsets of each topic, and the lag of every consumer group that has
    committed an offset on it. A group's partition it never committed counts from the first
    offset kept: that is where an `earliest` consumer starts."""
    bootstrap, security = settings.kafka_bootstrap_servers, settings.kafka_security
    parts = await partitions(bootstrap, physical, security=security)
    tps = [TopicPartition(t, p) for t in physical for p in parts[t]]
    async with reader(bootstrap, security) as consumer:
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    committed = await _group_offsets(bootstrap, set(physical), security)
    result = []
    for t in physical:
        groups = []
        for group, offsets in sorted(committed.items()):
            mine = {tp.partition: o for tp, o in offsets.items() if tp.topic == t}
            if not mine:
                continue
            lag = {
                p: max(ends[TopicPartition(t, p)] - mine.get(p, starts[TopicPartition(t, p)]), 0)
                for p in parts[t]
            }
            groups.append(GroupLag(group, mine, lag))
        kept = [
            PartitionOffsets(p, starts[TopicPartition(t, p)], ends[TopicPartition(t, p)])
            for p in parts[t]
        ]
        result.append(TopicOffsets(settings.logical(t), t, kept, groups))
    return result


async def _group_offsets(
    bootstrap: str, topics: set[str], security: KafkaSecurity
) -> dict[str, dict[TopicPartition, int]]:
    """Every consumer group's committed offsets on `topics` (groups with none left out)."""
    async with admin(bootstrap, security) as client:
        groups = sorted({g[0] for g in await client.list_consumer_groups()})

        async def of(group: str) -> dict[TopicPartition, int]:
            offsets = await client.list_consumer_group_offsets(group)
            return {
                tp: m.offset for tp, m in offsets.items() if tp.topic in topics and m.offset >= 0
            }

        found = await asyncio.gather(*(of(g) for g in groups))
    return {g: offsets for g, offsets in zip(groups, found, strict=True) if offsets}


Ready = Callable[[dict[TopicPartition, int]], None]


async def records(
    bootstrap: str,
    physical: list[str],
    *,
    security: KafkaSecurity,
    from_beginning: bool = True,
    follow: bool = False,
    ready: Ready | None = None,
) -> AsyncGenerator[Any, None]:
    """The committed records of `physical` topics, partition by partition in offset order
    (no order across partitions). Without `follow`, up to the end offsets as they were when
    reading began; with it, on and on. `ready` is told each partition's first offset to read
    once the reader stands there, so a caller may announce it (records produced afterwards
    are read)."""
    parts = await partitions(bootstrap, physical, security=security)
    tps = [TopicPartition(t, p) for t in physical for p in parts[t]]
    async with reader(bootstrap, security) as consumer:
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        start = {tp: await consumer.position(tp) for tp in tps}
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        if ready is not None:
            ready(start)
        while True:
            pending = (
                tps if follow else [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            )
            if not pending:
                return
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, found in batch.items():
                for record in found:
                    if follow or record.offset < ends[tp]:
                        yield record


async def record_at(
    bootstrap: str, physical: str, partition: int, offset: int, *, security: KafkaSecurity
) -> Any | None:
    """The record at `offset`, or None when there is none (never written, or gone)."""
    tp = TopicPartition(physical, partition)
    parts = await partitions(bootstrap, [physical], security=security)
    if partition not in parts[physical]:
        return None
    async with reader(bootstrap, security) as consumer:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= offset < end:
            return None
        consumer.seek(tp, offset)
        deadline = time.monotonic() + REQUEST_TIMEOUT_MS / 1000
        while await consumer.position(tp) <= offset and time.monotonic() < deadline:
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                if record.offset == offset:
                    return record
                if record.offset > offset:  # a transaction marker or an aborted record
                    return None
        return None
