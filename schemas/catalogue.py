"""The topic catalogue: the one place that says which topics exist and what they carry.

Topic creation (`python -m shared.kafka.admin ensure-topics`), validation of what a producer
may write, and the documentation all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Everything the saga consumes is keyed by order id and shares this partition count, so that
# one order's events and commands land on the same partition number everywhere (co-partitioning).
SAGA_PARTITIONS = 6

DEAD_LETTER_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    key: str
    message_types: tuple[str, ...]
    cleanup_policy: Literal["delete", "compact"] = "delete"
    saga: bool = False
    # commands have exactly one handler: its consumer dead-letters any type it does not handle,
    # where an event topic's consumers skip the known types they do not care about
    commands: bool = False
    description: str = ""
    # (type, payload field) for a message keyed by something other than `key`: it keeps its
    # own per-key order but is not co-partitioned with the saga, which must not rely on it.
    key_overrides: tuple[tuple[str, str], ...] = ()

    @property
    def dead_letter(self) -> str:
        return self.name + DEAD_LETTER_SUFFIX

    def key_of(self, message_type: str) -> str:
        """The payload field whose value is the record key of `message_type` on this topic."""
        return dict(self.key_overrides).get(message_type, self.key)


TOPICS: tuple[Topic, ...] = (
    Topic(
        "checkout.commands",
        SAGA_PARTITIONS,
        "order_id",
        ("ConfirmOrder", "RejectOrder"),
        saga=True,
        commands=True,
        description="commands the saga sends to checkout",
    ),
    Topic(
        "checkout.events",
        SAGA_PARTITIONS,
        "order_id",
        ("OrderPlaced", "OrderConfirmed", "OrderRejected", "OrderCancelled", "OrderCommandRefused"),
        saga=True,
        description="facts about orders",
    ),
    Topic(
        "inventory.commands",
        SAGA_PARTITIONS,
        "order_id",
        ("ReserveStock", "ReleaseStock"),
        saga=True,
        commands=True,
        description="commands the saga sends to inventory",
    ),
    Topic(
        "inventory.events",
        SAGA_PARTITIONS,
        "order_id",
        ("StockReserved", "StockReservationFailed", "StockReleased", "StockLevelChanged"),
        saga=True,
        description="facts about reservations (keyed by order) and stock levels (keyed by SKU)",
        key_overrides=(("StockLevelChanged", "sku"),),
    ),
    Topic(
        "receipts.commands",
        SAGA_PARTITIONS,
        "order_id",
        ("RequestReceipt",),
        saga=True,
        commands=True,
        description="commands the saga sends to receipts: a receipt asked for again",
    ),
    Topic(
        "receipts.events",
        SAGA_PARTITIONS,
        "order_id",
        ("ReceiptIssued",),
        saga=True,
        description="one receipt per confirmed order",
    ),
    Topic(
        "payments.requests",
        SAGA_PARTITIONS,
        "order_id",
        ("RequestPayment", "VoidPayment"),
        saga=True,
        commands=True,
        description="upstream payment provider: our requests",
    ),
    Topic(
        "payments.events",
        SAGA_PARTITIONS,
        "order_id",
        ("PaymentAuthorized", "PaymentDeclined", "PaymentVoided"),
        saga=True,
        description="upstream payment provider: its answers",
    ),
    Topic(
        "orchestrator.deadlines",
        SAGA_PARTITIONS,
        "order_id",
        ("SagaDeadlinePassed",),
        saga=True,
        description="the orchestrator's own: saga deadlines, ordered with the saga's replies",
    ),
    Topic(
        "warehouse.events",
        3,
        "sku",
        ("StockReceived",),
        description="upstream warehouse: stock arrivals",
    ),
)


def topic(name: str) -> Topic:
    """The catalogue entry for `name`; KeyError names the unknown topic."""
    for t in TOPICS:
        if t.name == name:
            return t
    raise KeyError(f"topic {name!r} is not in the catalogue")


def is_command_topic(physical: str) -> bool:
    """Whether `physical` is a command topic of the catalogue, under any topic prefix."""
    return any(t.commands and physical.endswith(t.name) for t in TOPICS)


def all_topic_names() -> list[str]:
    """Every topic the system needs, dead-letter topics included."""
    return [n for t in TOPICS for n in (t.name, t.dead_letter)]
