"""When a passed deadline may be announced: only for sagas of partitions the agent has fully
processed, once each."""

from __future__ import annotations

from datetime import timedelta

from aiokafka.partitioner import DefaultPartitioner

from services.orchestrator.deadlines import Deadlines, caught_up, partition_of
from services.orchestrator.saga import Status
from tests.unit.test_saga import at_status


def test_an_order_maps_to_the_partition_our_producers_choose() -> None:
    partitioner = DefaultPartitioner()
    for order_id in ("ord-1", "3f0c8a52-4be5-4f7e-9a77-2f1f5a3e9c10", "x"):
        expected = partitioner(order_id.encode(), list(range(6)), list(range(6)))
        assert partition_of(order_id, 6) == expected


def test_a_partition_is_caught_up_only_when_every_source_is_processed_to_its_end() -> None:
    tps = [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]
    highwater = {("a", 0): 10, ("b", 0): 5, ("a", 1): 7, ("b", 1): 0, ("a", 2): None}
    done = {("a", 0): 10, ("b", 0): 4, ("a", 1): 7}
    # 0: b is one short; 1: a done, b empty; 2: high watermark not known yet
    assert caught_up(tps, highwater, done) == {1}
    assert caught_up(tps, highwater, {**done, ("b", 0): 5}) == {0, 1}


def test_nothing_processed_and_nothing_committed_is_not_caught_up() -> None:
    assert caught_up([("a", 0)], {("a", 0): 3}, {}) == set()


def test_a_passed_deadline_is_due_once_and_only_on_a_caught_up_partition() -> None:
    run = at_status(Status.PAYING)
    saga = run.s
    assert saga.deadline_at is not None
    deadlines = Deadlines(6)
    deadlines.track(saga)
    mine = deadlines.partition(saga.order_id)
    later = saga.deadline_at + timedelta(seconds=1)
    assert deadlines.due(saga.deadline_at - timedelta(seconds=1), {mine}) == []
    assert deadlines.due(later, set(range(6)) - {mine}) == []  # not caught up there
    [due] = deadlines.due(later, {mine})
    assert (due.order_id, due.status, due.deadline) == (saga.order_id, "paying", saga.deadline)
    assert deadlines.due(later, {mine}) == []  # announced already
    deadlines.keep_only(set(range(6)) - {mine})
    assert len(deadlines) == 0
