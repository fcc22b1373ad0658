"""Failures as an operator reads them: one line on stderr and an exit status a script can test.

1: what was asked for is not there (an unknown order, topic, dead letter) or was refused;
2: the command line or the environment is wrong (typer's and `configured`'s status);
3: Kafka or PostgreSQL cannot be reached, as the services exit when they start without them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError

T = TypeVar("T")

NOT_FOUND, USAGE, UNREACHABLE = 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, status: int = NOT_FOUND) -> None:
        super().__init__(message)
        self.status = status


def redact(dsn: str) -> str:
    """A database URL without its password, fit to print."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def kafka_unreachable(bootstrap: str, exc: BaseException) -> CliError:
    return CliError(f"Kafka unreachable at {bootstrap}: {brief(exc)}", UNREACHABLE)


def postgres_unreachable(dsn: str, exc: BaseException) -> CliError:
    return CliError(f"PostgreSQL unreachable at {redact(dsn)}: {brief(exc)}", UNREACHABLE)


def brief(exc: BaseException) -> str:
    """The exception's type and the first line of its message (aiokafka's repeat the type)."""
    name = type(exc).__name__
    lines = str(exc).strip().splitlines()
    text = lines[0].removeprefix(f"{name}: ") if lines else ""
    return f"{name}: {text}" if text else name


def explained(exc: BaseException, *, bootstrap: str) -> CliError | None:
    """What Kafka or PostgreSQL raised, as a CliError (a broker gone mid-command, a refused
    request); None for anything else, which is a bug to show as one."""
    match exc:
        case CliError():
            return exc
        case KafkaConnectionError() | TimeoutError():
            return kafka_unreachable(bootstrap, exc)
        case KafkaError():
            return CliError(f"Kafka refused the request: {brief(exc)}")
        case asyncpg.PostgresError():
            return CliError(f"PostgreSQL refused: {brief(exc)}")
        case OSError():  # a connection lost mid-command
            return CliError(brief(exc), UNREACHABLE)
    return None


def run(work: Coroutine[Any, Any, T], *, bootstrap: str) -> T:
    """Run one command's coroutine; what Kafka or PostgreSQL raise that the command did not
    turn into a CliError itself becomes one."""
    try:
        return asyncio.run(work)
    except Exception as exc:
        if (error := explained(exc, bootstrap=bootstrap)) is None or error is exc:
            raise
        raise error from None
