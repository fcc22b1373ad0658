"""The orchestrator's consumer lag, as every other consumer exports it: `leadline_consumer_lag`
per partition this instance holds = end of the partition minus the group's committed offset.

The shared consumer runner reports it from its own poll loop; faust owns the orchestrator's, so
a timer asks the broker through clients of its own, never faust's consumer (whose calls share
two workers with its fetches, commits and seeks): the ends from a group-less consumer, the
committed offsets from the group coordinator through an admin client. Only partitions held here
are exported (the alerts sum over instances), and those given up are withdrawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka.security import KafkaSecurity
from shared.observability.metrics import CONSUMER_LAG

Lags = dict[tuple[str, int], int]
_REQUEST_TIMEOUT_MS = 10_000


def lag_of(
    held: Iterable[tuple[str, int]], ends: Mapping[Any, int], committed: Mapping[Any, Any]
) -> Lags:
    """Per held partition with a known end: end minus the committed offset (a partition the group
    never committed counts from 0, as an `earliest` consumer starts). `committed` maps a
    partition to an OffsetAndMetadata (offset -1 when none)."""
    lags: Lags = {}
    for topic, partition in held:
        end = ends.get(TopicPartition(topic, partition))
        if end is None:
            continue
        mark = committed.get(TopicPartition(topic, partition))
        offset = mark.offset if mark is not None and mark.offset >= 0 else 0
        lags[(topic, partition)] = max(end - offset, 0)
    return lags


class LagReporter:
    def __init__(self, group: str, bootstrap: str, security: KafkaSecurity) -> None:
        self._group = group
        self._bootstrap = bootstrap
        self._security = security
        # made on the first report, in the running loop
        self._admin: AIOKafkaAdminClient | None = None
        self._ends: AIOKafkaConsumer | None = None
        self._exported: set[tuple[str, int]] = set()

    async def report(self, held: set[tuple[str, int]]) -> Lags:
        """Export the lag of the `held` partitions and withdraw the others'; the lags exported."""
        lags: Lags = {}
        if held:
            admin, reader = await self._started()
            tps = [TopicPartition(topic, partition) for topic, partition in sorted(held)]
            ends = await reader.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(self._group, partitions=tps)
            lags = lag_of(held, ends, committed)
        for topic, partition in self._exported - lags.keys():
            CONSUMER_LAG.remove(self._group, topic, str(partition))
        for (topic, partition), lag in lags.items():
            CONSUMER_LAG.labels(self._group, topic, str(partition)).set(lag)
        self._exported = set(lags)
        return lags

    async def _started(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._ends is None:
            common: dict[str, Any] = {
                "bootstrap_servers": self._bootstrap,
                "client_id": f"{self._group}.lag",
                "request_timeout_ms": _REQUEST_TIMEOUT_MS,
            }
            admin = AIOKafkaAdminClient(**common, **self._security.aiokafka())
            # no group: it never joins the orchestrator's, it only asks for end offsets
            reader = AIOKafkaConsumer(
                group_id=None, enable_auto_commit=False, **common, **self._security.aiokafka()
            )
            try:
                await admin.start()
                await reader.start()
            except BaseException:  # Kafka away: the next report tries again
                await reader.stop()
                await admin.close()
                raise
            self._admin, self._ends = admin, reader
        return self._admin, self._ends

    async def close(self) -> None:
        for topic, partition in self._exported:
            CONSUMER_LAG.remove(self._group, topic, str(partition))
        self._exported = set()
        if self._ends is not None:
            await self._ends.stop()
            self._ends = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
