"""Smoke tests that prove the platform is real: Apache Kafka 4.x in KRaft mode, with the delivery
guarantees the backbone builds on, and PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import TopicFactory
from tests.support import eventually, unique

pytestmark = pytest.mark.integration

# ---------------------------------------------------------------- helpers


def _producer(bootstrap: str, **extra: object) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **extra
    )


def _consumer(
    bootstrap: str, topic: str, *, group: str | None = None, isolation: str = "read_committed"
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation,
    )


async def _drain(
    consumer: AIOKafkaConsumer, *, until: str | None = None, count: int | None = None
) -> list[ConsumerRecord]:
    """Poll until `count` records arrived, or a record with value `until` did."""
    seen: list[ConsumerRecord] = []

    async def poll() -> list[ConsumerRecord]:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            seen.extend(records)
        return seen

    def done(records: list[ConsumerRecord]) -> bool:
        if until is not None:
            return any(r.value == until.encode() for r in records)
        return len(records) >= (count or 0)

    return await eventually(poll, done, what=f"records (until={until}, count={count})")


# ---------------------------------------------------------------- delivery guarantees


async def test_idempotent_producer_round_trip_keeps_keys_values_headers_and_key_order(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("smoke.roundtrip", partitions=3)
    keys = [f"order-{i}".encode() for i in range(5)]
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    producer = _producer(kafka_bootstrap)
    await producer.start()
    try:
        acks = []
        for seq in range(20):
            for key in keys:
                value = key + b":" + str(seq).encode()
                headers = [("type", b"OrderPlaced"), ("seq", str(seq).encode())]
                acks.append(await producer.send(topic, value, key=key, headers=headers))
                sent[key].append(value)
        await asyncio.gather(*acks)
    finally:
        await producer.stop()

    consumer = _consumer(kafka_bootstrap, topic)
    await consumer.start()
    try:
        records = await _drain(consumer, count=100)
    finally:
        await consumer.stop()

    received: dict[bytes, list[bytes]] = defaultdict(list)
    for record in records:
        received[record.key].append(record.value)
        assert dict(record.headers) == {
            "type": b"OrderPlaced",
            "seq": record.value.rsplit(b":", 1)[1],
        }
    assert received == sent  # every record once, each key's records in the order sent


async def test_read_committed_consumer_sees_committed_transactions_only(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("smoke.txn")
    producer = _producer(kafka_bootstrap, transactional_id=unique("smoke-tx"))
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send_and_wait(topic, f"committed-{i}".encode(), key=b"k")
        await producer.begin_transaction()
        for i in range(3):
            await producer.send_and_wait(topic, f"aborted-{i}".encode(), key=b"k")
        await producer.abort_transaction()
        # a committed record after the aborted ones tells the consumers they have read past them
        async with producer.transaction():
            await producer.send_and_wait(topic, b"end", key=b"k")
    finally:
        await producer.stop()

    values: dict[str, list[str]] = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = _consumer(kafka_bootstrap, topic, isolation=isolation)
        await consumer.start()
        try:
            values[isolation] = [r.value.decode() for r in await _drain(consumer, until="end")]
        finally:
            await consumer.stop()

    assert values["read_committed"] == ["committed-0", "committed-1", "committed-2", "end"]
    # the aborted records really are in the log: only the isolation level hides them
    assert [v for v in values["read_uncommitted"] if v.startswith("aborted")] == [
        "aborted-0",
        "aborted-1",
        "aborted-2",
    ]


async def test_consumer_group_resumes_from_its_committed_offset(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("smoke.resume")
    producer = _producer(kafka_bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, str(i).encode(), key=b"k")
    finally:
        await producer.stop()
    group = unique("smoke-group")
    partition = TopicPartition(topic, 0)

    first = _consumer(kafka_bootstrap, topic, group=group)
    await first.start()
    try:
        processed = (await _drain(first, count=4))[:4]
        await first.commit({partition: processed[-1].offset + 1})
    finally:
        await first.stop()

    # auto_offset_reset="earliest": without the committed offset this would start at 0 again
    second = _consumer(kafka_bootstrap, topic, group=group)
    await second.start()
    try:
        assert await second.committed(partition) == 4
        rest = await _drain(second, count=6)
    finally:
        await second.stop()
    assert [r.value for r in processed] == [b"0", b"1", b"2", b"3"]
    assert [r.value for r in rest] == [str(i).encode() for i in range(4, 10)]


async def test_topic_factory_makes_unique_topics(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    a = await new_topic("smoke", partitions=2)
    b = await new_topic("smoke", partitions=2)
    assert a != b
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([a, b])
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {a: 2, b: 2}


# ---------------------------------------------------------------- the broker is what we claim

API_VERSIONS = 18
FETCH = 1
DESCRIBE_QUORUM = 55
ZOOKEEPER_ERA_INTER_BROKER_APIS = {4: "LeaderAndIsr", 5: "StopReplica", 6: "UpdateMetadata"}
METADATA_VERSION_4_0_IV0 = 22  # MetadataVersion feature level of the first 4.0 release


@dataclass
class _Reader:
    data: bytes
    pos: int = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def compact_string(self) -> str:
        size = self.uvarint() - 1
        self.pos += size
        return self.data[self.pos - size : self.pos].decode()

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()


@dataclass
class _ApiVersions:
    error_code: int
    apis: dict[int, tuple[int, int]] = field(default_factory=dict)
    finalized_features: dict[str, int] = field(default_factory=dict)


def _compact(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw) + 1]) + raw


async def _api_versions(bootstrap: str) -> _ApiVersions:
    """ApiVersions v3, by hand: aiokafka speaks only v0-v2, which carry no feature levels."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    client_id = b"leadline-tests"
    header = struct.pack(">hhih", API_VERSIONS, 3, 1, len(client_id)) + client_id + b"\x00"
    body = _compact("leadline-tests") + _compact("1") + b"\x00"
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(struct.pack(">i", len(header + body)) + header + body)
        await writer.drain()
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        r = _Reader(await reader.readexactly(size))
    finally:
        writer.close()
        await writer.wait_closed()

    assert r.take(">i") == 1  # correlation id (ApiVersions responses use header v0)
    result = _ApiVersions(error_code=r.take(">h"))
    for _ in range(r.uvarint() - 1):
        key, low, high = r.take(">h"), r.take(">h"), r.take(">h")
        r.skip_tags()
        result.apis[key] = (low, high)
    r.take(">i")  # throttle time
    for _ in range(r.uvarint()):
        tag, size = r.uvarint(), r.uvarint()
        if tag != 2:  # FinalizedFeatures
            r.pos += size
            continue
        for _ in range(r.uvarint() - 1):
            name, max_level, _min_level = r.compact_string(), r.take(">h"), r.take(">h")
            r.skip_tags()
            result.finalized_features[name] = max_level
    return result


async def test_broker_is_apache_kafka_4_in_kraft_mode(kafka_bootstrap: str) -> None:
    versions = await _api_versions(kafka_bootstrap)
    assert versions.error_code == 0
    # Only a KRaft cluster finalizes metadata.version; its level names the release it runs.
    assert versions.finalized_features.get("metadata.version", 0) >= METADATA_VERSION_4_0_IV0, (
        versions.finalized_features
    )
    # Kafka 4.0 removed Fetch v0-v3 (KIP-896); every 3.x broker still serves them.
    assert versions.apis[FETCH][0] >= 4
    # the Raft quorum answers, and no ZooKeeper-era controller-to-broker API is left
    assert DESCRIBE_QUORUM in versions.apis
    assert not set(ZOOKEEPER_ERA_INTER_BROKER_APIS) & set(versions.apis)


# ---------------------------------------------------------------- PostgreSQL


async def test_asyncpg_round_trip_in_a_fresh_database(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO t VALUES (1, 'x')")
        assert await conn.fetchval("SELECT v FROM t WHERE id = 1") == "x"
        assert "PostgreSQL" in await conn.fetchval("SELECT version()")
    finally:
        await conn.close()
