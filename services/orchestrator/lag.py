"""The orchestrator's consumer lag, as every other consumer exports it: `leadline_consumer_lag`
per partition this instance holds = end of the partition minus the group's committed offset.

The shared consumer runner reports it from its own poll loop; faust owns the orchestrator's, so
a timer asks: the ends from faust's consumer (`highwaters`, the broker's end offsets), the
committed offsets from the group coordinator through an admin client. Only partitions held here
are exported (the alerts sum over instances), and those given up are withdrawn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka.security import KafkaSecurity
from shared.observability.metrics import CONSUMER_LAG

Ends = Callable[..., Awaitable[Mapping[Any, int]]]
Lags = dict[tuple[str, int], int]


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
        self._admin: AIOKafkaAdminClient | None = None  # made on the first report, in the loop
        self._exported: set[tuple[str, int]] = set()

    async def report(self, held: set[tuple[str, int]], highwaters: Ends) -> Lags:
        """Export the lag of the `held` partitions and withdraw the others'; the lags exported."""
        lags: Lags = {}
        if held:
            admin = await self._started()
            tps = [TopicPartition(topic, partition) for topic, partition in sorted(held)]
            ends = await highwaters(*tps)
            committed = await admin.list_consumer_group_offsets(self._group, partitions=tps)
            lags = lag_of(held, ends, committed)
        for topic, partition in self._exported - lags.keys():
            CONSUMER_LAG.remove(self._group, topic, str(partition))
        for (topic, partition), lag in lags.items():
            CONSUMER_LAG.labels(self._group, topic, str(partition)).set(lag)
        self._exported = set(lags)
        return lags

    async def _started(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._group}.lag",
                request_timeout_ms=10_000,
                **self._security.aiokafka(),
            )
            try:
                await admin.start()
            except BaseException:  # Kafka away: the next report tries again
                await admin.close()
                raise
            self._admin = admin
        return self._admin

    async def close(self) -> None:
        for topic, partition in self._exported:
            CONSUMER_LAG.remove(self._group, topic, str(partition))
        self._exported = set()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
