"""Records faust's stream jumped over are read again by the saga processor itself, from Kafka,
before the record it was handed: where the agents have got to comes from the saga progress
in PostgreSQL (written behind every worker, only ever forward), so a worker taking a partition
over finds what its predecessor's committed offset skipped. Real Kafka and PostgreSQL; the
processor is built, not started."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.orchestrator import store
from services.orchestrator.processor import Processor, Record
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.view import ViewWriter
from shared.kafka.admin import ensure_topics
from shared.postgres import install_schema
from tests.support import unique

pytestmark = pytest.mark.integration


async def a_partition_of(bootstrap: str, records: int) -> str:
    topic = unique("skipped")
    await ensure_topics(bootstrap, [(topic, 1, {})])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(records):
            await producer.send_and_wait(topic, f"value-{i}".encode(), key=b"k", partition=0)
    finally:
        await producer.stop()
    return topic


def handed(topic: str, offset: int) -> Record:
    return Record(topic, 0, offset, b"k", f"value-{offset}".encode(), [])


async def test_a_record_past_the_recorded_progress_brings_the_skipped_ones_first(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, tmp_path: Path
) -> None:
    await install_schema(pg_pool, store.SCHEMA)
    topic = await a_partition_of(kafka_bootstrap, 10)
    view = ViewWriter(pg_pool)
    view.applied(topic, 0, 5)  # a worker that died applied 0..4
    await view.flush()
    view.applied(topic, 0, 3)  # a late write of a slower one: never back
    await view.flush()
    assert await view.progress(topic, 0) == 5
    settings = OrchestratorSettings(
        kafka_bootstrap_servers=kafka_bootstrap, data_dir=tmp_path, app_id=unique("orchestrator")
    )
    successor = Processor(settings, ViewWriter(pg_pool))

    missed = await successor._skipped_before(handed(topic, 8))  # committed past 5, 6 and 7

    assert [(r.offset, r.value) for r in missed] == [(o, f"value-{o}".encode()) for o in (5, 6, 7)]
    # from then on the stream's own order counts: a record again, or the next, skips nothing
    successor._expected[(topic, 0)] = 9
    assert await successor._skipped_before(handed(topic, 4)) == []
    assert await successor._skipped_before(handed(topic, 9)) == []


async def test_a_partition_nobody_recorded_is_taken_as_it_comes(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, tmp_path: Path
) -> None:
    await install_schema(pg_pool, store.SCHEMA)
    topic = await a_partition_of(kafka_bootstrap, 3)
    settings = OrchestratorSettings(
        kafka_bootstrap_servers=kafka_bootstrap, data_dir=tmp_path, app_id=unique("orchestrator")
    )
    fresh = Processor(settings, ViewWriter(pg_pool))

    assert await fresh._skipped_before(handed(topic, 2)) == []
    # within the partition held, a jump is a skip all the same
    fresh._expected[(topic, 0)] = 1
    assert [r.offset for r in await fresh._skipped_before(handed(topic, 2))] == [1]
