"""Which sagas' deadlines have passed, and when it is safe to say so.

A deadline is only announced for a partition whose records the saga agent has all processed:
after a restart the replies that arrived meanwhile sit unread in the source topics, and
announcing a deadline before reading them would turn a crash into a spurious rejection. The
announcement is a `SagaDeadlinePassed` message on the saga's own stream, so the agent applies
it in order with everything else (and a stale one changes nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka.partitioner import murmur2

from services.orchestrator.saga import Saga


def partition_of(order_id: str, partitions: int) -> int:
    """Where our producers (murmur2, as Java's) put an order's records."""
    hashed: int = murmur2(order_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Due:
    order_id: str
    status: str
    deadline: int  # the saga's deadline counter


@dataclass
class Deadlines:
    """The pending deadline of every saga this worker holds, kept by the agent as it goes and
    rebuilt from the table when partitions are assigned."""

    partitions: int
    _pending: dict[str, tuple[datetime, Due]] = field(default_factory=dict)
    # order id -> the deadline counter last announced: bounded by the sagas still waiting
    _announced: dict[str, int] = field(default_factory=dict)

    def track(self, saga: Saga) -> None:
        if saga.deadline_at is None or saga.terminal:
            self._pending.pop(saga.order_id, None)
            self._announced.pop(saga.order_id, None)
            return
        due = Due(saga.order_id, saga.status.value, saga.deadline)
        self._pending[saga.order_id] = (saga.deadline_at, due)

    def keep_only(self, partitions: set[int]) -> None:
        """Forget sagas of partitions this worker no longer holds."""
        for order_id in [o for o in self._pending if self.partition(o) not in partitions]:
            del self._pending[order_id]
            self._announced.pop(order_id, None)

    def partition(self, order_id: str) -> int:
        return partition_of(order_id, self.partitions)

    def due(self, now: datetime, caught_up: set[int]) -> list[Due]:
        """Deadlines passed on caught-up partitions, each announced once per process (a repeat
        after a restart is harmless: the deadline's message id is deterministic)."""
        found = [
            due
            for at, due in self._pending.values()
            if at <= now
            and self._announced.get(due.order_id) != due.deadline
            and self.partition(due.order_id) in caught_up
        ]
        self._announced.update((d.order_id, d.deadline) for d in found)
        return found

    def __len__(self) -> int:
        return len(self._pending)


def caught_up(
    partitions: Iterable[tuple[str, int]],
    highwater: Mapping[tuple[str, int], int | None],
    done: Mapping[tuple[str, int], int],
) -> set[int]:
    """Partition numbers whose every source partition has been processed up to its high
    watermark (`done`: the next offset to process, from processed records or the committed
    offset; absent or -1: not known). A source partition whose high watermark is not known
    yet is not caught up; an empty one (high watermark 0) is."""
    by_number: dict[int, bool] = {}
    for tp in partitions:
        hw = highwater.get(tp)
        ok = hw is not None and (hw == 0 or done.get(tp, -1) >= hw)
        by_number[tp[1]] = by_number.get(tp[1], True) and ok
    return {number for number, ok in by_number.items() if ok}
