"""How the backbone waits between attempts, and which failures are outages.

An outage (the database or the network away) is not the message's fault: it is retried without
limit, never dead-lettered, so a database restart cannot empty a topic into its dead-letter
topic. The partition waits; liveness reports the stall once it outlasts the window. Every loop
that retries (consumer runner, relay, receipt delivery) waits by `backoff_delay` and asks
`is_outage`, so they agree on both.
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import InsufficientResourcesError, OperatorInterventionError

OUTAGES: tuple[type[Exception], ...] = (
    OSError,  # ConnectionError and friends
    TimeoutError,  # pool acquire or statement timeouts
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing"
    # what a connection the server dropped while idle (a restart) answers its next query
    asyncpg.InternalClientError,
    OperatorInterventionError,  # admin shutdown, cannot connect now (server restarting)
    InsufficientResourcesError,  # too many connections, disk full
)

# 2**30 times any sane initial delay is past every cap: the exponent stops there, so an attempt
# count that grew for months (a receipt whose mail server never answers) cannot overflow a float
_MAX_EXPONENT = 30


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGES)


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential: initial, 2·initial, 4·initial … capped at `maximum` (attempt counts from 1;
    any attempt number, however large, gives a finite delay)."""
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    return float(min(maximum, initial * 2**exponent))
