"""The PostgreSQL unit of work: one pooled connection, one transaction, every port bound to it."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

from shared.postgres.eventstore import PostgresEventStore
from shared.postgres.inbox import PostgresInbox
from shared.postgres.outbox import PostgresOutbox


class PostgresUnitOfWork:
    """`connection` is there for a service's own tables, inside the same transaction.
    `inbox_table` names the inbox when it is not the default one; a subclass may finish its
    work in `before_commit` (a failure there rolls the transaction back)."""

    events: PostgresEventStore
    outbox: PostgresOutbox
    inbox: PostgresInbox
    connection: PoolConnectionProxy[asyncpg.Record]

    def __init__(self, pool: asyncpg.Pool, *, inbox_table: str = "inbox") -> None:
        self._pool = pool
        self._inbox_table = inbox_table
        self._tx: Transaction | None = None

    async def __aenter__(self) -> Self:
        self.connection = await self._pool.acquire()
        try:
            self._tx = self.connection.transaction()
            await self._tx.start()
        except BaseException:
            await self._pool.release(self.connection)
            raise
        self.events = PostgresEventStore(self.connection)
        self.outbox = PostgresOutbox(self.connection)
        self.inbox = PostgresInbox(self.connection, self._inbox_table)
        return self

    async def before_commit(self) -> None:
        """Runs inside the transaction when the block ended without an error."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tx is not None
        try:
            if exc_type is None:
                try:
                    await self.before_commit()
                except BaseException:
                    await self._rollback()
                    raise
                await self._tx.commit()
            else:
                await self._rollback()
        finally:
            await self._pool.release(self.connection)

    async def _rollback(self) -> None:
        assert self._tx is not None
        # The caller must see the block's own error (a PermanentError must stay permanent),
        # not a rollback failing on a broken connection: the server rolls the transaction back
        # anyway when that session ends.
        with contextlib.suppress(
            asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError
        ):
            await self._tx.rollback()
