"""The topic catalogue: the one place that says which topics exist and what they carry.

Topic creation (`python -m shared.kafka.admin ensure-topics`), validation of what a producer
may write, the documentation, and the secured profile's ACLs (`shared/kafka/acls.py`: a party
may write only the topics it produces and read only those it consumes) all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Everything the saga consumes is keyed by order id and shares this partition count, so that
# one order's events and commands land on the same partition number everywhere (co-partitioning).
SAGA_PARTITIONS = 6

DEAD_LETTER_SUFFIX = ".dlq"

# The parties that produce and consume: each is one Kafka principal in the secured profile.
# The payment provider and the warehouse are upstream systems (locally, simulators).
Party = Literal[
    "checkout",
    "inventory",
    "receipts",
    "projection",
    "orchestrator",
    "payment-provider",
    "warehouse",
]


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
    # the one party that writes it, and every party that reads it (and dead-letters what it
    # cannot handle on its dead-letter topic)
    producer: Party = field(kw_only=True)
    consumers: tuple[Party, ...] = field(kw_only=True)

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
        producer="orchestrator",
        consumers=("checkout",),
    ),
    Topic(
        "checkout.events",
        SAGA_PARTITIONS,
        "order_id",
        ("OrderPlaced", "OrderConfirmed", "OrderRejected", "OrderCancelled", "OrderCommandRefused"),
        saga=True,
        description="facts about orders",
        producer="checkout",
        consumers=("receipts", "orchestrator", "projection"),
    ),
    Topic(
        "inventory.commands",
        SAGA_PARTITIONS,
        "order_id",
        ("ReserveStock", "ReleaseStock"),
        saga=True,
        commands=True,
        description="commands the saga sends to inventory",
        producer="orchestrator",
        consumers=("inventory",),
    ),
    Topic(
        "inventory.events",
        SAGA_PARTITIONS,
        "order_id",
        ("StockReserved", "StockReservationFailed", "StockReleased", "StockLevelChanged"),
        saga=True,
        description="facts about reservations (keyed by order) and stock levels (keyed by SKU)",
        producer="inventory",
        consumers=("orchestrator", "projection"),
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
        producer="orchestrator",
        consumers=("receipts",),
    ),
    Topic(
        "receipts.events",
        SAGA_PARTITIONS,
        "order_id",
        ("ReceiptIssued",),
        saga=True,
        description="one receipt per confirmed order",
        producer="receipts",
        consumers=("orchestrator", "projection"),
    ),
    Topic(
        "payments.requests",
        SAGA_PARTITIONS,
        "order_id",
        ("RequestPayment", "VoidPayment"),
        saga=True,
        commands=True,
        description="upstream payment provider: our requests",
        producer="orchestrator",
        consumers=("payment-provider",),
    ),
    Topic(
        "payments.events",
        SAGA_PARTITIONS,
        "order_id",
        ("PaymentAuthorized", "PaymentDeclined", "PaymentVoided"),
        saga=True,
        description="upstream payment provider: its answers",
        producer="payment-provider",
        consumers=("orchestrator", "projection"),
    ),
    Topic(
        "orchestrator.deadlines",
        SAGA_PARTITIONS,
        "order_id",
        ("SagaDeadlinePassed",),
        saga=True,
        description="the orchestrator's own: saga deadlines, ordered with the saga's replies",
        producer="orchestrator",
        consumers=("orchestrator",),
    ),
    Topic(
        "warehouse.events",
        3,
        "sku",
        ("StockReceived",),
        description="upstream warehouse: stock arrivals",
        producer="warehouse",
        consumers=("inventory",),
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
