"""What a view is, for the runner, the rebuild and the API: a name, the topics it reads, its
tables (with the order that makes a table dump comparable) and its subscription table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from services.projection.store import ViewUnitOfWork, live_schema, view_ddl
from shared.kafka.consumer import Subscription

Subscriptions = Callable[[Callable[[str], str]], list[Subscription[ViewUnitOfWork]]]
"""Given `topic(name)` (catalogue name → physical name), the view's subscriptions."""


@dataclass(frozen=True)
class View:
    name: str
    topics: tuple[str, ...]  # catalogue names
    tables: str  # DDL, `{s}` for the schema; the inbox is added by `ddl()`
    rows: tuple[tuple[str, str], ...]  # (table, ORDER BY) for every table but the inbox
    subscriptions: Subscriptions

    @property
    def schema(self) -> str:
        return live_schema(self.name)

    def ddl(self, schema: str) -> str:
        return view_ddl(self.tables, schema)

    def consumer_name(self, prefix: str) -> str:
        """Its consumer group and inbox consumer: one per view, so each has its own offsets
        and lag, and can be rebuilt alone."""
        return f"{prefix}.{self.name}"


def utc_day(at: datetime) -> date:
    """The UTC day of `at` (a time without an offset is taken as UTC): days in the views do
    not depend on the producer's time zone."""
    return (at.astimezone(UTC) if at.tzinfo else at).date()
