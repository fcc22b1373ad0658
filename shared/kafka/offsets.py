"""Which offsets a consumer may commit, and how far behind it is.

An offset is *settled* once its record's transaction committed or its dead letter was
acknowledged; only settled offsets are ever committed to Kafka, so a crash redelivers
whatever was not settled and the inbox skips what was applied but not yet committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from aiokafka.errors import KafkaError

from shared.observability.metrics import CONSUMER_LAG


class Offsets:
    def __init__(self, consumer_name: str, log: Any) -> None:
        self._name = consumer_name
        self._log = log
        self._settled: dict[Any, int] = {}  # partition -> offset after its last settled record
        self._committed: dict[Any, int] = {}
        self._lag: dict[Any, int] = {}  # partition -> lag at the last report
        self._lock = asyncio.Lock()

    def settle(self, tp: Any, next_offset: int) -> None:
        self._settled[tp] = next_offset

    async def commit(self, consumer: Any) -> None:
        """Commit every settled offset not committed yet, of partitions still assigned. A failed
        commit is logged and retried with the next one; meanwhile the records may come again
        (to us or to a new owner), and the inbox skips them."""
        async with self._lock:
            assigned = consumer.assignment()
            offsets = {
                tp: offset
                for tp, offset in self._settled.items()
                if tp in assigned and self._committed.get(tp) != offset
            }
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                self._log.warning("offset commit failed", error=repr(exc))
                return
            self._committed.update(offsets)

    def forget(self, partitions: Iterable[Any]) -> None:
        """Partitions revoked: their next owner starts from what was committed."""
        for tp in partitions:
            self._settled.pop(tp, None)
            self._committed.pop(tp, None)
            self._lag.pop(tp, None)
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self._name, tp.topic, str(tp.partition))

    async def report_lag(self, consumer: Any) -> None:
        """Lag = end of the partition (last stable offset under read_committed) minus the
        committed offset; a partition never committed by the group counts from offset 0."""
        ends: dict[Any, int] = {}
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp) or consumer.highwater(tp)
            if end is not None:
                ends[tp] = end
        for tp, end in ends.items():
            if tp not in self._committed:
                try:  # once per partition and assignment
                    self._committed[tp] = await consumer.committed(tp) or 0
                except KafkaError:
                    continue
            lag = end - self._committed[tp]
            self._lag[tp] = lag
            CONSUMER_LAG.labels(self._name, tp.topic, str(tp.partition)).set(lag)

    def total_lag(self) -> int | None:
        """The sum over assigned partitions at the last report; None before the first one."""
        return sum(self._lag.values()) if self._lag else None
