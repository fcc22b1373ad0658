"""Where the views live: one PostgreSQL schema per view, holding its tables and its own inbox.

A view is rebuilt into a shadow schema and swapped in by renaming schemas (`rebuild.py`), so
everything that must change with it sits inside it: its rows and the inbox that says which
events those rows include. Handler SQL names tables as `{s}.table`; the unit of work fills in
the schema it writes to, the live one or the shadow.
"""

from __future__ import annotations

from functools import cache

import asyncpg

from shared.postgres.inbox import inbox_ddl
from shared.postgres.types import Connection
from shared.postgres.uow import PostgresUnitOfWork

# The service's own bookkeeping, outside every view: rebuilds in progress and done.
SCHEMA = """
CREATE TABLE IF NOT EXISTS rebuilds (
    view        text        PRIMARY KEY,
    state       text        NOT NULL CHECK (state IN ('replaying', 'swapping', 'done', 'failed')),
    done        bigint      NOT NULL DEFAULT 0,
    total       bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    error       text
);
"""


def live_schema(view: str) -> str:
    return f"view_{view}"


def shadow_schema(view: str) -> str:
    return f"view_{view}__shadow"


@cache
def qualified(template: str, schema: str) -> str:
    """`template` with `{s}` replaced by a schema name (ours, never user input); cached, so a
    statement's text is stable and asyncpg's prepared-statement cache keeps working."""
    return template.replace("{s}", schema)


def view_ddl(tables: str, schema: str) -> str:
    """A view's schema: its tables (`tables`, with `{s}`) and its inbox."""
    inbox = inbox_ddl("{s}.inbox", "inbox_processed_at")
    return qualified(f"CREATE SCHEMA IF NOT EXISTS {{s}};\n{tables}\n{inbox}", schema)


class ViewUnitOfWork(PostgresUnitOfWork):
    """One transaction on one view's schema: `inbox` is the view's own; handlers `write()` their
    statements (`{s}` for the schema), which run before the commit, one `executemany` per
    statement, statements in the order of their first write, rows of one statement in the
    order written.

    Statements of a batch are therefore regrouped: a view's statements must give the same rows
    in any order *across* statements. They do: records whose order matters (one order's
    reservations, its payments, one SKU's levels) are written by one statement, so they stay in
    order; where two statements meet on a row, checkout's columns are guarded by the stream
    version (an outcome published before versions were is "the next version" and so runs after
    what was written before it: `orders.decided` flushes first) and a receipt's number is
    first-wins; timeline rows are inserts by event id, and
    the daily figures are sums over per-order rows. That turns a batch's round trips from one
    per record into one per statement."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        super().__init__(pool, inbox_table=qualified("{s}.inbox", schema))
        self.schema = schema
        self._pending: dict[str, list[tuple[object, ...]]] = {}

    def write(self, template: str, *args: object) -> None:
        self._pending.setdefault(qualified(template, self.schema), []).append(args)

    async def flush(self) -> None:
        """Run what was written so far (before a savepoint ends, or the commit)."""
        pending, self._pending = self._pending, {}
        for statement, rows in pending.items():
            await self.connection.executemany(statement, rows)

    async def before_commit(self) -> None:
        await self.flush()


async def table_rows(
    conn: Connection, schema: str, table: str, order_by: str
) -> list[dict[str, object]]:
    """Every row of one view table, in a stable order (comparisons, rebuild checks)."""
    rows = await conn.fetch(f"SELECT * FROM {schema}.{table} ORDER BY {order_by}")
    return [dict(r) for r in rows]
