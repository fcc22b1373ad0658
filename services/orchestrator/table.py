"""A faust Table whose changelog writes can be awaited.

faust sends a table's changelog writes through a buffer and, before committing the source
offsets, flushes it for at most 0.1 s without progress; what is still unsent then is committed
past anyway, and a SIGKILL loses it: the saga comes back from its changelog a step behind the
messages already consumed (seen on our broker: a lost PaymentAuthorized transition, then a
payment deadline that compensated a confirmed order). The saga agent therefore awaits every
changelog write of a message (`written`) before it moves on and faust acks the message.
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

    async def written(self, timeout: float) -> None:
        """Every changelog write since the last call acknowledged by Kafka (raises when one
        failed or did not make it in time: the caller writes the value again)."""
        pending, self._unconfirmed = self._unconfirmed, []
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending), timeout)
