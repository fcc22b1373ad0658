"""The views and their subscription tables (STYLE 3): each view has its own consumer group and
inbox, so each has its own offsets and lag and can be rebuilt alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import asyncpg

from services.projection import orders, outcomes, sales, stock
from services.projection.store import ViewUnitOfWork
from services.projection.views import View
from shared.kafka.consumer import ConsumerRunner, ConsumerSettings
from shared.kafka.security import PLAINTEXT, KafkaSecurity

VIEWS: Mapping[str, View] = {
    v.name: v for v in (orders.VIEW, stock.VIEW, sales.VIEW, outcomes.VIEW)
}


class ViewConsumers:
    """Every view's runner as the one consumer `ServiceRuntime` starts, runs and stops."""

    def __init__(self, runners: Mapping[str, ConsumerRunner[ViewUnitOfWork]]) -> None:
        self.runners = dict(runners)

    async def start(self) -> None:
        started: list[ConsumerRunner[ViewUnitOfWork]] = []
        try:
            for runner in self.runners.values():
                await runner.start()
                started.append(runner)
        except BaseException:
            for runner in started:
                await runner.stop()
            raise

    async def run(self) -> None:
        # one runner's loop dying ends them all: liveness turns red and the process restarts
        async with asyncio.TaskGroup() as group:
            for runner in self.runners.values():
                group.create_task(runner.run())

    async def stop(self) -> None:
        await asyncio.gather(*(runner.stop() for runner in self.runners.values()))

    def is_alive(self) -> bool:
        return all(runner.is_alive() for runner in self.runners.values())


def view_consumers(
    pool: asyncpg.Pool,
    *,
    bootstrap_servers: str,
    topic: Callable[[str], str],
    group_prefix: str,
    settings: ConsumerSettings,
    security: KafkaSecurity = PLAINTEXT,
) -> ViewConsumers:
    def runner(view: View) -> ConsumerRunner[ViewUnitOfWork]:
        return ConsumerRunner(
            name=view.consumer_name(group_prefix),
            bootstrap_servers=bootstrap_servers,
            subscriptions=view.subscriptions(topic),
            uow_factory=lambda: ViewUnitOfWork(pool, view.schema),
            settings=settings,
            security=security,
        )

    return ViewConsumers({name: runner(view) for name, view in VIEWS.items()})
