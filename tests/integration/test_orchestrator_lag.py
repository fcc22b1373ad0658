"""The orchestrator's `leadline_consumer_lag`, from a real broker: the partitions' end offsets
minus the offsets the group committed; partitions no longer held are withdrawn."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from services.orchestrator.lag import LagReporter
from shared.kafka.admin import ensure_topics
from shared.kafka.security import PLAINTEXT
from tests.support import unique

pytestmark = pytest.mark.integration


def _exported(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "leadline_consumer_lag",
        {"consumer": group, "topic": topic, "partition": str(partition)},
    )


async def test_lag_is_end_minus_committed_and_a_partition_given_up_is_withdrawn(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("lag"), unique("lag-group")
    await ensure_topics(kafka_bootstrap, [(topic, 2, {})])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, b"x%d" % i, partition=0)
        for i in range(3):
            await producer.send_and_wait(topic, b"y%d" % i, partition=1)
    finally:
        await producer.stop()
    # the group has committed 2 records of partition 0 and none of partition 1
    committer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([TopicPartition(topic, 0)])
        await committer.commit({TopicPartition(topic, 0): 2})
    finally:
        await committer.stop()

    lag = LagReporter(group, kafka_bootstrap, PLAINTEXT)
    try:
        held = {(topic, 0), (topic, 1)}
        assert await lag.report(held) == {(topic, 0): 3, (topic, 1): 3}
        assert _exported(group, topic, 0) == 3
        assert _exported(group, topic, 1) == 3

        assert await lag.report({(topic, 1)}) == {(topic, 1): 3}
        assert _exported(group, topic, 0) is None, "a partition given up is still exported"
        assert _exported(group, topic, 1) == 3
    finally:
        await lag.close()
    assert _exported(group, topic, 1) is None
