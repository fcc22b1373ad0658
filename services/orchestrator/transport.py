"""faust's Kafka transport with the fixes of ours that keep a record from being lost.

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
- An ack of a record fetched before the last rebalance, or given while the flow is stopped, is
  refused. faust's stream skips such a record (its generation is stale) and acks it anyway, so
  faust committed past a reply no agent had seen (found on our broker: a ReceiptIssued lost
  when a second worker took over). Refused, the record stays uncommitted; the seek after the
  rebalance fetches it again, and the agent then applies it (at worst twice: the saga drops a
  message id it applied).
- While the flow is stopped, a partition's read offset never moves forward. faust's fetch loop
  sets it for every record of the batch in hand, delivered or not; when that happened after the
  seek, the records fetched again from the committed offset lay below it and were dropped
  without a trace, and the partition stalled (found on our broker: sagas stuck in `paying`,
  their partition's deadlines never announced). Seeks (which move it back) still apply.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from prometheus_client import Counter

ACKS_REFUSED = Counter(
    "leadline_saga_stale_acks_refused_total",
    "Acks faust gave records it skipped (fetched before a rebalance, or while the flow was"
    " stopped) that the orchestrator refused, so that they are fetched and applied again.",
    ["topic"],
)


class IdempotentProducer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class ReadOffsets(defaultdict[TP, int | None]):
    """faust's read offsets per partition, which only a seek may move while the flow is
    stopped (`dict.update`, which faust's seek uses, bypasses `__setitem__`)."""

    def __init__(self, consumer: SeekSafeConsumer) -> None:
        super().__init__(lambda: None)
        self._consumer = consumer

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        current = self.get(tp)
        stopped = self._consumer.suspend_flow.is_set()
        if stopped and offset is not None and current is not None and offset > current:
            return  # a record of the batch in hand, not delivered: it must come again
        super().__setitem__(tp, offset)


class SeekSafeConsumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = ReadOffsets(self)

    async def perform_seek(self) -> None:
        self.stop_flow()  # nothing reaches an agent until faust's own resume_flow()
        await asyncio.sleep(0)  # let the fetcher step out of a delivery under way
        await super().perform_seek()

    def ack(self, message: Any) -> bool:
        stale = message.generation_id != self.app.consumer_generation_id
        if stale or not self.app.flow_control.is_active():
            self._unacked_messages.discard(message)  # nothing waits for it on shutdown
            ACKS_REFUSED.labels(message.topic).inc()
            return False
        acked: bool = super().ack(message)
        return acked


class Transport(driver.Transport):
    Producer = IdempotentProducer
    Consumer = SeekSafeConsumer
