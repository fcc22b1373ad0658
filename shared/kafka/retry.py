"""How the consumer runner waits between attempts, and which failures are outages.

An outage (the database or the network away) is not the message's fault: it is retried without
limit, never dead-lettered, so a database restart cannot empty a topic into its dead-letter
topic. The partition waits; liveness reports the stall once it outlasts the window.
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import InsufficientResourcesError, OperatorInterventionError

_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError and friends
    TimeoutError,  # pool acquire or statement timeouts
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing"
    OperatorInterventionError,  # admin shutdown, cannot connect now (server restarting)
    InsufficientResourcesError,  # too many connections, disk full
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, _OUTAGES)


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential: initial, 2·initial, 4·initial … capped at `maximum` (attempt counts from 1)."""
    return float(min(maximum, initial * 2 ** min(attempt - 1, 30)))
