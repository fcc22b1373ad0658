"""The orchestrator's lag arithmetic: end of each held partition minus the group's committed
offset, a partition never committed counting from 0, one without a known end left out."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.orchestrator.lag import lag_of


def test_end_minus_committed_per_held_partition() -> None:
    held = {("checkout.events", 0), ("checkout.events", 1), ("payments.events", 3)}
    ends = {
        TopicPartition("checkout.events", 0): 10,
        TopicPartition("checkout.events", 1): 7,
        TopicPartition("payments.events", 3): 4,
    }
    committed = {
        TopicPartition("checkout.events", 0): OffsetAndMetadata(6, ""),
        TopicPartition("checkout.events", 1): OffsetAndMetadata(-1, ""),  # never committed
    }  # payments.events 3: not even named by the coordinator

    assert lag_of(held, ends, committed) == {
        ("checkout.events", 0): 4,
        ("checkout.events", 1): 7,
        ("payments.events", 3): 4,
    }


def test_a_partition_without_a_known_end_is_left_out_and_lag_is_never_negative() -> None:
    held = {("t", 0), ("t", 1)}
    ends = {TopicPartition("t", 1): 5}
    # committed ahead of the end this consumer saw (an end read a moment before the commit)
    committed = {TopicPartition("t", 1): OffsetAndMetadata(6, "")}

    assert lag_of(held, ends, committed) == {("t", 1): 0}
