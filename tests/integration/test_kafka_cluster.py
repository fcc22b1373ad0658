"""A 3-node KRaft cluster loses no acknowledged record when a broker dies mid-load.

Topics get 3 replicas and min.insync.replicas 2, so an acks=all write is on two nodes before it
is acknowledged: SIGKILL the leader of a partition while an idempotent producer keeps sending,
start it again, and every acknowledged record is there, each key's in the order sent. With two
of three nodes gone nothing is acknowledged at all: min ISR 2 is in force, not just configured.

The cluster is a throw-away one of this module's own (`infra.sh` with KAFKA_NODES=3 on free
ports); LEADLINE_CLUSTER_RECORDS sets the load of each phase (before, during, after the outage).
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.kafka.admin import ensure_topics
from tests.support import eventually, unique
from tests.support.infra import OwnKafka, leaders, replicas, topic_overrides

pytestmark = pytest.mark.integration

PHASE = int(os.environ.get("LEADLINE_CLUSTER_RECORDS", "600"))
PARTITIONS = 6
KEYS = [f"order-{i}".encode() for i in range(24)]
IN_FLIGHT = 50  # records awaiting acknowledgement at once: the kill always finds some


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnKafka]:
    kafka = OwnKafka(tmp_path_factory.mktemp("kafka-cluster"), nodes=3)
    try:
        kafka.up()
        yield kafka
    finally:
        kafka.remove()


async def _durable_topic(cluster: OwnKafka, partitions: int) -> str:
    topic = unique("cluster")
    await ensure_topics(
        cluster.bootstrap,
        [(topic, partitions, {})],
        replication_factor=3,
        min_insync_replicas=2,
    )
    assert await replicas(cluster.bootstrap, topic) == {p: [1, 2, 3] for p in range(partitions)}
    assert (await topic_overrides(cluster.bootstrap, topic))["min.insync.replicas"] == "2"
    return topic


class Load:
    """Keyed records, `key:seq` per key, sent by one idempotent acks=all producer with a window
    of IN_FLIGHT unacknowledged ones, until stopped. Only what was acknowledged counts."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap, self._topic = bootstrap, topic
        self._stop = asyncio.Event()
        self.acked: dict[bytes, list[bytes]] = defaultdict(list)
        self.failed = 0

    @property
    def count(self) -> int:
        return sum(map(len, self.acked.values()))

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        seq = 0
        try:
            while not self._stop.is_set():
                window = []
                for _ in range(IN_FLIGHT):
                    key = KEYS[seq % len(KEYS)]
                    value = b"%s:%d" % (key, seq)
                    window.append((key, value, await producer.send(self._topic, value, key=key)))
                    seq += 1
                for key, value, future in window:
                    try:
                        await future
                    except KafkaError:
                        self.failed += 1  # not acknowledged: may or may not be on the log
                    else:
                        self.acked[key].append(value)
        finally:
            await producer.stop()

    def stop(self) -> None:
        self._stop.set()

    async def reach(self, count: int) -> None:
        await eventually(
            lambda: self.count, lambda n: n >= count, timeout=120, what=f"{count} acks"
        )


async def _read_all(bootstrap: str, topic: str, wanted: int) -> dict[bytes, list[bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: dict[bytes, list[bytes]] = defaultdict(list)

    async def poll() -> int:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                received[record.key].append(record.value)
        return sum(map(len, received.values()))

    try:
        await eventually(poll, lambda n: n >= wanted, timeout=90, what="every acknowledged record")
        # then on to the end of every partition: unacknowledged records that made it are read
        # too, so duplicates and order are checked over everything on the log
        ends = await consumer.end_offsets(list(consumer.assignment()))

        async def at_end() -> bool:
            await poll()
            return all([await consumer.position(tp) >= end for tp, end in ends.items()])

        await eventually(at_end, bool, what="the end of every partition")
    finally:
        await consumer.stop()
    return received


async def test_a_killed_leader_loses_no_acknowledged_record(cluster: OwnKafka) -> None:
    topic = await _durable_topic(cluster, PARTITIONS)
    leader = (await leaders(cluster.bootstrap, topic))[0]
    victim = leader - 1  # node ids are 1..3, OwnKafka's nodes 0..2

    load = Load(cluster.bootstrap, topic)
    loading = asyncio.create_task(load.run())
    try:
        await load.reach(PHASE)
        # blocking calls off the loop: the load goes on while the node dies and comes back
        await asyncio.to_thread(cluster.kill, victim)
        await load.reach(load.count + PHASE)  # the two left carry on
        await asyncio.to_thread(cluster.start, victim)
        await load.reach(load.count + PHASE)
    finally:
        load.stop()
        await loading

    received = await _read_all(cluster.bootstrap, topic, load.count)
    for key, acked in load.acked.items():
        got = received[key]
        assert len(got) == len(set(got)), f"{key!r}: duplicates from an idempotent producer"
        assert got == sorted(got, key=lambda v: int(v.rpartition(b":")[2])), f"{key!r}: order"
        missing = set(acked) - set(got)
        assert not missing, f"{key!r}: {len(missing)} acknowledged records lost"


async def test_with_two_of_three_nodes_gone_nothing_is_acknowledged(cluster: OwnKafka) -> None:
    topic = await _durable_topic(cluster, 1)
    leader = (await leaders(cluster.bootstrap, topic))[0] - 1
    followers = [n for n in range(3) if n != leader]
    await asyncio.to_thread(cluster.kill, followers[0])
    await asyncio.to_thread(cluster.kill, followers[1])
    # The leader alone: either it already dropped a follower from the ISR and refuses
    # (NotEnoughReplicas), or, the controller quorum gone, it cannot, waits for the dead
    # follower and the request times out. Either way the producer is told: not acknowledged.
    # not idempotent: that one would first ask the dead coordinators for a producer id, forever
    producer = AIOKafkaProducer(
        bootstrap_servers=cluster.address(leader), acks="all", request_timeout_ms=5000
    )
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait(topic, b"must not be acknowledged", key=b"k")
    finally:
        await producer.stop()
        # side by side: either alone finds no controller quorum until the other is up too
        await asyncio.gather(*(asyncio.to_thread(cluster.start, node) for node in followers))
    # back to three: an acks=all write is acknowledged again
    await asyncio.to_thread(cluster.up)
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"acknowledged", key=b"k")
    finally:
        await producer.stop()
