"""What the simulator's handlers need from storage; PostgreSQL in `store`."""

from __future__ import annotations

from typing import Protocol

from shared.envelope import Envelope
from simulators.payment_provider.domain import Payment


class PaymentStore(Protocol):
    async def payment(self, order_id: str) -> Payment | None:
        """The order's payment, row-locked until the transaction ends, or None."""
        ...

    async def save(self, payment: Payment) -> None:
        """Insert or overwrite the order's payment."""
        ...

    async def schedule(self, topic: str, answer: Envelope, latency_ms: int) -> None:
        """Queue `answer` for the publisher, due `latency_ms` from now and never before an
        earlier answer of the same order still waiting."""
        ...


class SimulatorUnitOfWork(Protocol):
    """One transaction: the inbox row (claimed by the runner), the payment and its answers."""

    payments: PaymentStore
