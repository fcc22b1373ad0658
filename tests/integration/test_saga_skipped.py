"""Records faust's stream jumped over are read again by the saga processor itself, from Kafka,
before the record it was handed: where the agents have got to comes from the saga progress
in PostgreSQL (written behind every worker, only ever forward), so a worker taking a partition
over finds what its predecessor's committed offset skipped. Real Kafka and PostgreSQL; the
processor is built, not started."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas.inventory.v1 import StockLevelChanged
from services.orchestrator import store
from services.orchestrator.processor import Processor, Record
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.view import ViewWriter
from shared.envelope import Envelope
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


async def test_progress_is_recorded_only_once_what_the_record_staged_before_it_is_durable(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A successor trusts the recorded progress over faust's offsets: recorded before the
    effects of the records below it were durable, it would make the successor pass over a
    record whose saga change a crash lost (the stall watchdog reads on from there)."""
    await install_schema(pg_pool, store.SCHEMA)
    settings = OrchestratorSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        data_dir=tmp_path,
        app_id=unique("orchestrator"),
        topic_prefix=unique("progress") + ".",
    )
    view = ViewWriter(pg_pool)
    worker = Processor(settings, view)
    topic = worker.topics.sources[0]
    # a record no saga step reads (ignored), behind an effect the pipeline has not made
    # durable yet (its task is not running)
    level = StockLevelChanged(sku="MUG-01", on_hand=5, reserved=0, available=5)
    unread = Envelope.wrap(level, key="MUG-01", producer="inventory")
    worker._pipeline.wrote("o-0", handed(topic, 0))
    await worker._apply_record(
        Record(topic, 0, 7, b"MUG-01", unread.to_bytes(), list(unread.headers()))
    )
    await view.flush()
    assert await view.progress(topic, 0) is None

    running = asyncio.create_task(worker._pipeline.run())
    try:
        await asyncio.wait_for(worker._pipeline.drain(), 10)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    await view.flush()
    assert await view.progress(topic, 0) == 8
