"""faust's Kafka transport with two fixes of ours.

- The producer gets the settings every producer of ours has (acks=all and idempotence). faust
  enables idempotence only in its exactly-once mode, which we do not use (it duplicated records
  after a crash on our broker), so the saga table's changelog writes would go out without it.
- The consumer stops the flow before it seeks to the committed offsets after a recovery. faust
  resumes the stream partitions, seeks (one committed-offset round trip per partition), and
  only then resumes its flow control, which clears the agents' queues: records fetched in
  between were dropped, and faust then committed past them (an off-by-one gap check, or gap
  filling), so after a SIGKILL and restart the saga never saw some replies. Reproduced on our
  broker in every run of five; with this stop, no record was lost in twelve restarts. faust's
  own `resume_flow()` after the seek lets the records in again, fetched anew from the
  committed offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver


class IdempotentProducer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class SeekSafeConsumer(driver.Consumer):
    async def perform_seek(self) -> None:
        self.stop_flow()  # nothing reaches an agent until faust's own resume_flow()
        await asyncio.sleep(0)  # let the fetcher step out of a delivery under way
        await super().perform_seek()


class Transport(driver.Transport):
    Producer = IdempotentProducer
    Consumer = SeekSafeConsumer
