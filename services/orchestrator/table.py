"""A faust Table whose changelog writes can be awaited.

faust sends a table's changelog writes through a buffer and, before committing the source
offsets, flushes it for at most 0.1 s without progress; what is still unsent then is committed
past anyway, and a SIGKILL loses it: the saga comes back from its changelog a step behind the
messages already consumed (seen on our broker: a lost PaymentAuthorized transition, then a
payment deadline that compensated a confirmed order). So every changelog write is awaited:
the saga pipeline (pipeline.py) takes them (`take_unconfirmed`) and sees them acknowledged
before it sends the commands staged after them, and before faust commits past the message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import FutureMessage


class DurableTable(faust.Table[str, bytes]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unconfirmed: list[FutureMessage] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        sent: FutureMessage = super().send_changelog(*args, **kwargs)
        self._unconfirmed.append(sent)
        return sent

    def take_unconfirmed(self) -> list[asyncio.Future[Any]]:
        """The changelog writes issued since the last call, to be awaited."""
        pending, self._unconfirmed = self._unconfirmed, []
        return list(pending)
