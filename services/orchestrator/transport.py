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
- A commit first waits until the saga's effects of every record acked so far are durable
  (`Transport.before_commit`, the processor's `Pipeline.drain`): the agent stages a record's
  table write and commands and moves on, and faust acks the record when the agent takes the
  next one. The offsets to commit are chosen before the wait, so a record acked during it is
  not committed with them.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from faust.exceptions import ProducerSendError
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

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        # faust's own, with the wait between choosing the offsets and committing them
        offsets = self._filter_committable_offsets(tps)
        if not offsets:
            return False
        before_commit = getattr(self.transport, "before_commit", None)
        if before_commit is not None:
            await before_commit()
        try:
            await self._handle_attached(offsets)
        except ProducerSendError as exc:
            await self.crash(exc)
            return False
        committed: bool = await self._commit_offsets(
            offsets, start_new_transaction=start_new_transaction
        )
        return committed

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
    # awaited before every commit: the effects of the records acked so far made durable
    before_commit: Callable[[], Awaitable[None]] | None = None
