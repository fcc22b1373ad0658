"""The orchestrator's faust consumer refuses what would let faust commit past a record no agent
applied (transport.py): an ack of a record fetched before the last rebalance, and a read offset
moved forward over records not delivered while the flow is stopped."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, cast

import asyncpg
from faust.types import TP
from prometheus_client import REGISTRY

from services.orchestrator.processor import Processor
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.transport import ReadOffsets, SeekSafeConsumer
from services.orchestrator.view import ViewWriter


def consumer(tmp_path: Path) -> SeekSafeConsumer:
    settings = OrchestratorSettings(
        kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path, app_id=f"t-{uuid.uuid4().hex}"
    )
    # never started: the consumer object is built, nothing connects
    made = Processor(settings, ViewWriter(cast(asyncpg.Pool, None))).app.consumer
    assert isinstance(made, SeekSafeConsumer)
    return made


class FakeMessage:
    """The parts of a faust ConsumerMessage an ack reads."""

    def __init__(self, topic: str, offset: int, generation_id: int) -> None:
        self.topic, self.partition, self.offset = topic, 0, offset
        self.tp = TP(topic, 0)
        self.generation_id = generation_id
        self.acked = False


def refused(topic: str) -> float:
    value = REGISTRY.get_sample_value("leadline_saga_stale_acks_refused_total", {"topic": topic})
    return value or 0.0


def test_a_record_fetched_before_the_last_rebalance_is_not_acked(tmp_path: Path) -> None:
    made, topic = consumer(tmp_path), f"topic-{uuid.uuid4().hex}"
    made.app.consumer_generation_id = 7
    made.app.flow_control.resume()
    stale = FakeMessage(topic, 41, generation_id=6)
    made._unacked_messages.add(cast(Any, stale))

    assert made.ack(cast(Any, stale)) is False

    assert not stale.acked
    assert 41 not in made._acked_index[stale.tp]  # faust will not commit past it
    assert stale not in made._unacked_messages  # nor wait for it on shutdown
    assert refused(topic) == 1


def test_a_record_acked_while_the_flow_is_suspended_is_not_acked(tmp_path: Path) -> None:
    made, topic = consumer(tmp_path), f"topic-{uuid.uuid4().hex}"
    made.app.consumer_generation_id = 3
    made.app.flow_control.suspend()

    assert made.ack(cast(Any, FakeMessage(topic, 5, generation_id=3))) is False
    assert refused(topic) == 1


def test_a_read_offset_does_not_move_forward_while_the_flow_is_stopped(tmp_path: Path) -> None:
    made, tp = consumer(tmp_path), TP("t", 0)
    offsets = made._read_offset
    assert isinstance(offsets, ReadOffsets)
    assert offsets[tp] is None  # unknown partitions read as None, as faust expects
    offsets[tp] = 10

    made.stop_flow()
    offsets[tp] = 25  # a record of the batch in hand, not delivered
    assert offsets[tp] == 10
    offsets[tp] = 4  # a seek back
    assert offsets[tp] == 4
    offsets.update({tp: 30})  # faust's perform_seek writes this way
    assert offsets[tp] == 30

    made.resume_flow()
    offsets[tp] = 31
    assert offsets[tp] == 31
