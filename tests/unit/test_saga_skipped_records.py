"""The saga agent reports records its stream skipped: an offset jump within a partition held
since the last rebalance (our source topics are neither compacted nor transactional, so their
offsets have no gaps of their own)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, cast

import asyncpg
from prometheus_client import REGISTRY

from services.orchestrator.processor import Processor, Record
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.view import ViewWriter


def skipped(topic: str) -> float:
    value = REGISTRY.get_sample_value("leadline_saga_records_skipped_total", {"topic": topic})
    return value or 0.0


def record(topic: str, partition: int, offset: int) -> Record:
    return Record(topic, partition, offset, b"k", b"{}", [])


def processor(tmp_path: Path) -> Processor:
    settings = OrchestratorSettings(
        kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, app_id=f"t-{uuid.uuid4().hex}"
    )
    # never started: neither Kafka nor the view's pool is touched
    return Processor(settings, ViewWriter(cast(asyncpg.Pool, None)))


def test_contiguous_offsets_are_not_reported_and_a_jump_counts_the_records_jumped(
    tmp_path: Path,
) -> None:
    made, topic = processor(tmp_path), f"topic-{uuid.uuid4().hex}"
    for offset in (7, 8, 9):
        made._check_contiguous(record(topic, 0, offset))
    made._check_contiguous(record(topic, 1, 40))  # another partition's first record
    assert skipped(topic) == 0

    made._check_contiguous(record(topic, 0, 13))  # 10, 11 and 12 never seen

    assert skipped(topic) == 3


async def test_a_partition_that_comes_back_after_a_rebalance_starts_afresh(tmp_path: Path) -> None:
    made, topic = processor(tmp_path), f"topic-{uuid.uuid4().hex}"
    made._check_contiguous(record(topic, 0, 7))
    revoked: Any = made.app.on_partitions_revoked
    await revoked.send(set())  # another worker may read on meanwhile

    made._check_contiguous(record(topic, 0, 30))

    assert skipped(topic) == 0
