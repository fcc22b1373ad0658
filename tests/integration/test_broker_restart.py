"""Stopping and restarting the broker loses no acknowledged record.

The shared broker on 9092 serves everyone else's tests, so this one starts its own real broker
with `infra.sh kafka-up` (own run folder, own ports; the jar cache is shared), restarts it, and
throws it away afterwards, even when the test fails.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support import eventually, unique
from tests.support.infra import OwnKafka, is_kafka_jvm, pid_running

pytestmark = pytest.mark.integration

KEYS = [f"order-{i}".encode() for i in range(5)]
PER_KEY = 40


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnKafka]:
    broker = OwnKafka(tmp_path_factory.mktemp("own-broker"))
    try:
        broker.up()
        yield broker
    finally:
        broker.remove()


async def _send_round(
    producer: AIOKafkaProducer, topic: str, round_: int
) -> dict[bytes, list[bytes]]:
    """Send PER_KEY records per key; return them once every one is acknowledged."""
    acked: dict[bytes, list[bytes]] = defaultdict(list)
    futures = []
    for seq in range(PER_KEY):
        for key in KEYS:
            value = b"%s:%d:%d" % (key, round_, seq)
            futures.append(await producer.send(topic, value, key=key))
            acked[key].append(value)
    await asyncio.gather(*futures)
    return acked


async def _stop_and_restart(broker: OwnKafka, how: str) -> None:
    old = broker.pid()
    if how == "SIGTERM":
        await asyncio.to_thread(broker.down)  # clean stop: TERM, wait for exit
    else:
        # SIGKILL; returns once the process is gone and its port closed
        await asyncio.to_thread(broker.kill)
    assert not pid_running(old)
    await asyncio.to_thread(broker.up)
    assert broker.pid() != old
    assert is_kafka_jvm(broker.pid())


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_broker_restart_loses_no_acknowledged_record(own_broker: OwnKafka, how: str) -> None:
    topic = unique("restart")
    admin = AIOKafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=own_broker.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        before = await _send_round(producer, topic, 0)
        await _stop_and_restart(own_broker, how)
        # the same idempotent producer carries on against the restarted broker
        after = await _send_round(producer, topic, 1)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=own_broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    received: dict[bytes, list[bytes]] = defaultdict(list)
    total = 2 * PER_KEY * len(KEYS)

    async def poll() -> int:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                received[record.key].append(record.value)
        return sum(map(len, received.values()))

    try:
        await eventually(poll, lambda n: n >= total, timeout=60, what="every acknowledged record")
    finally:
        await consumer.stop()
    # every acknowledged record exactly once, each key's records in the order they were sent
    assert received == {key: before[key] + after[key] for key in KEYS}
