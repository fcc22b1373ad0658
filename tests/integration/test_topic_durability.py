"""ensure_topics makes topics as durable as the settings ask: replicas and min.insync.replicas
set on the topic itself, and a topic made before with other replicas is named, not changed."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from shared.kafka.admin import ensure_topics
from tests.support import unique
from tests.support.infra import replicas, topic_overrides

pytestmark = pytest.mark.integration


async def test_created_topics_carry_min_insync_replicas(kafka_bootstrap: str) -> None:
    compacted, plain = unique("durable-compact"), unique("durable-plain")
    made = await ensure_topics(
        kafka_bootstrap,
        [(compacted, 2, {"cleanup.policy": "compact"}), (plain, 1, {})],
        replication_factor=1,
        min_insync_replicas=1,
    )
    assert sorted(made) == sorted([compacted, plain])
    # set on the topic, not inherited from the broker's default (which a cluster may lack)
    assert await topic_overrides(kafka_bootstrap, compacted) == {
        "cleanup.policy": "compact",
        "min.insync.replicas": "1",
    }
    assert await topic_overrides(kafka_bootstrap, plain) == {"min.insync.replicas": "1"}
    assert [len(r) for r in (await replicas(kafka_bootstrap, compacted)).values()] == [1, 1]


async def test_a_topic_config_may_name_its_own_min_insync_replicas(kafka_bootstrap: str) -> None:
    topic = unique("durable-own")
    await ensure_topics(kafka_bootstrap, [(topic, 1, {"min.insync.replicas": "1"})])
    assert (await topic_overrides(kafka_bootstrap, topic))["min.insync.replicas"] == "1"


async def test_an_existing_topic_with_other_replicas_is_named_and_left_alone(
    kafka_bootstrap: str,
) -> None:
    topic = unique("durable-old")
    await ensure_topics(kafka_bootstrap, [(topic, 1, {})])
    with capture_logs() as logs:
        made = await ensure_topics(
            kafka_bootstrap, [(topic, 1, {})], replication_factor=3, min_insync_replicas=2
        )
    assert made == []
    warnings = [e for e in logs if e["log_level"] == "warning" and e.get("topic") == topic]
    assert [(w["replication_factor"], w["asked"]) for w in warnings] == [([1], 3)]
    assert [len(r) for r in (await replicas(kafka_bootstrap, topic)).values()] == [1]
