"""Where the queue builds: every consumer group of the run sampled each second for its lag
(records between the group's committed offsets and the end of its partitions), kept per group
as the peak of a step and its value when the step's sending ended. The group whose lag grows
while the others stay near zero is the stage the system waits on.

Committed offsets lag a little by design (each service commits after its batch; faust every few
seconds), so a lag of a few dozen is noise; a lag in the hundreds that keeps growing is not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError


@dataclass
class Lags:
    peak: dict[str, int] = field(default_factory=dict)
    now: dict[str, int] = field(default_factory=dict)
    at_mark: dict[str, int] = field(default_factory=dict)

    def mark(self) -> None:
        """The lags as they are now are kept as "at the end of sending"."""
        self.at_mark = dict(self.now)


class LagSampler:
    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.prefix = prefix
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def sample(self) -> dict[str, int]:
        """Lag per group of the run (its id holds the run's prefix), summed over partitions."""
        groups = [g[0] for g in await self.admin.list_consumer_groups() if self.prefix in g[0]]
        committed = {g: await self.admin.list_consumer_group_offsets(g) for g in groups}
        partitions = {tp for offsets in committed.values() for tp in offsets}
        ends = await self.ends.end_offsets(list(partitions)) if partitions else {}
        return {
            g: sum(max(0, ends[tp] - o.offset) for tp, o in offsets.items() if o.offset >= 0)
            for g, offsets in committed.items()
        }

    @contextlib.asynccontextmanager
    async def sampling(self, interval: float = 1.0) -> AsyncIterator[Lags]:
        lags = Lags()
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(KafkaError, OSError):
                    lags.now = await self.sample()
                    for group, lag in lags.now.items():
                        lags.peak[group] = max(lags.peak.get(group, 0), lag)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

        task = asyncio.create_task(loop())
        try:
            yield lags
        finally:
            stop.set()
            await task

    async def __aenter__(self) -> LagSampler:
        await self.admin.start()
        await self.ends.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.ends.stop()
        await self.admin.close()


def short(group: str, prefix: str) -> str:
    """A group's name without the run's prefix."""
    return group.replace(prefix, "", 1)
