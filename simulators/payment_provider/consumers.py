"""The subscription table: topic → message type → handler, in one greppable place (STYLE 3)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from schemas.payments.v1 import RequestPayment, VoidPayment
from shared.kafka.consumer import Subscription
from simulators.payment_provider import handlers
from simulators.payment_provider.domain import Controls
from simulators.payment_provider.store import PostgresSimulatorUnitOfWork


@dataclass(frozen=True)
class Topics:
    requests: str
    events: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(requests=prefix + "payments.requests", events=prefix + "payments.events")


def subscriptions(
    topics: Topics, controls: Controls
) -> list[Subscription[PostgresSimulatorUnitOfWork]]:
    out = topics.events
    request = partial(handlers.request_payment, out=out, controls=controls)
    void = partial(handlers.void_payment, out=out, controls=controls)
    return [
        Subscription(topics.requests, RequestPayment, request),
        Subscription(topics.requests, VoidPayment, void),
    ]
