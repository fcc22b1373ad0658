"""One backoff and one notion of "outage" for every loop that retries (shared/retry.py)."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg.exceptions import CannotConnectNowError, ConnectionDoesNotExistError

from shared.retry import backoff_delay, is_outage


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        TimeoutError(),
        ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        CannotConnectNowError("the database system is shutting down"),
        asyncpg.InterfaceError("connection is closed"),
        # seen on a connection the server dropped while a restart was under way
        asyncpg.InternalClientError("cannot switch to state 11; another operation is in progress"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_a_database_restart_raises_is_an_outage(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc", [ValueError("bad"), asyncpg.UniqueViolationError("dup"), KeyError("x")]
)
def test_a_handlers_own_failure_is_not_an_outage(exc: BaseException) -> None:
    assert not is_outage(exc)


def test_backoff_doubles_and_is_capped_for_any_attempt_number() -> None:
    assert [backoff_delay(n, 0.1, 5.0) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.8]
    assert backoff_delay(7, 0.1, 5.0) == 5.0
    # a row retried for months: 2**1024 would overflow a float
    assert backoff_delay(1025, 1.0, 300.0) == 300.0
    assert backoff_delay(10**9, 1.0, 300.0) == 300.0
