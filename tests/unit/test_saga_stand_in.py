"""The stall watchdog applies records outside faust's stream; faust's table takes the partition
of a write from the event being processed and refuses a write without one. The processor
stands in an event for the record it applies, so the write goes to that record's partition."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from services.orchestrator.processor import Processor, Record, standing_in_for_faust
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.view import ViewWriter


def processor(tmp_path: Path) -> Processor:
    settings = OrchestratorSettings(
        kafka_bootstrap_servers="127.0.0.1:1",
        data_dir=tmp_path,
        app_id=f"t-{uuid.uuid4().hex}",
        store="memory",
    )
    # never started: no broker is reached, the changelog writes only queue up
    return Processor(settings, ViewWriter(cast(asyncpg.Pool, None)))


async def test_a_table_write_outside_the_stream_is_refused_by_faust(tmp_path: Path) -> None:
    made = processor(tmp_path)
    with pytest.raises(TypeError, match="outside of stream"):
        made.table["order-1"] = b"{}"


async def test_a_write_standing_in_for_a_record_goes_to_that_records_partition(
    tmp_path: Path,
) -> None:
    made = processor(tmp_path)
    source = made.topics.sources[0]
    record = Record(source, 4, 17, b"order-1", b"{}", [])

    with standing_in_for_faust(made.app, record):
        made.table["order-1"] = b'{"status":"paying"}'

    assert made.table["order-1"] == b'{"status":"paying"}'
    [sent] = made.table._unconfirmed
    assert sent.message.partition == 4
    with pytest.raises(TypeError):  # the stand-in is gone with the block
        made.table["order-2"] = b"{}"
