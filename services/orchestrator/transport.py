"""faust's Kafka transport with the producer settings every producer of ours has (acks=all and
idempotence). faust enables idempotence only in its exactly-once mode, which we do not use (it
duplicated records after a crash on our broker: see the README), so the changelog writes of the
saga table would otherwise go out without it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver


class IdempotentProducer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class Transport(driver.Transport):
    Producer = IdempotentProducer
