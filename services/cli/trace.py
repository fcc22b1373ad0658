"""One order across every topic, arranged by causation.

Every message of an order carries the order id as its correlation id and the event id of the
message that caused it (`causation_id`, shared/envelope.py): OrderPlaced → ReserveStock →
StockReserved → RequestPayment → … So the records of one order form a forest: a message whose
cause is among them hangs under it, the others (the order's first event, or a message whose
cause was not found) are roots. A message found more than once under the same event id (a
re-send after a crash, a re-drive) is one node that counts its copies; its dead letters hang on
it. Timings are from the order's first message.

The catalogue's topics and their dead-letter topics are read whole, filtered by the
`correlation_id` header: cost grows with the topics, not with the order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from schemas.catalogue import DEAD_LETTER_SUFFIX
from services.cli import kafka
from services.cli.errors import CliError
from services.cli.events import Only, Seen
from services.cli.settings import CliSettings


@dataclass(frozen=True)
class Failure:
    """A consumer dead-lettered the message: who, and why (its `dlq.*` headers)."""

    consumer: str
    reason: str
    error: str

    @classmethod
    def of(cls, seen: Seen) -> Failure:
        h = seen.headers
        return cls(h.get("dlq.consumer", ""), h.get("dlq.reason", ""), h.get("dlq.error", ""))


@dataclass
class Node:
    seen: Seen  # the first copy found
    copies: int = 1
    dead_letters: list[Failure] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    @property
    def at(self) -> datetime:
        assert self.seen.envelope is not None
        return self.seen.envelope.occurred_at

    def as_json(self, first: datetime) -> dict[str, Any]:
        envelope = self.seen.envelope
        assert envelope is not None
        return {
            "event_id": str(envelope.event_id),
            "type": envelope.type,
            "topic": self.seen.topic,
            "partition": self.seen.partition,
            "offset": self.seen.offset,
            "producer": envelope.producer,
            "occurred_at": envelope.occurred_at.isoformat(),
            "after_seconds": round((envelope.occurred_at - first).total_seconds(), 6),
            "causation_id": None if envelope.causation_id is None else str(envelope.causation_id),
            "copies": self.copies,
            "dead_letters": [asdict(d) for d in self.dead_letters],
            "children": [c.as_json(first) for c in self.children],
        }


def forest(found: list[Seen]) -> list[Node]:
    """The records of one order as trees by causation, each level in time order. Records
    without an envelope cannot be placed and are left out."""
    nodes: dict[str, Node] = {}
    letters: list[tuple[str, Seen, Failure]] = []
    for seen in sorted((s for s in found if s.envelope is not None), key=_when):
        assert seen.envelope is not None
        event_id = str(seen.envelope.event_id)
        if seen.topic.endswith(DEAD_LETTER_SUFFIX):
            letters.append((event_id, seen, Failure.of(seen)))
        elif event_id in nodes:
            nodes[event_id].copies += 1
        else:
            nodes[event_id] = Node(seen)
    for event_id, seen, failure in letters:
        # a dead letter whose original is gone (retention) stands in for it
        nodes.setdefault(event_id, Node(seen)).dead_letters.append(failure)
    roots: list[Node] = []
    for node in sorted(nodes.values(), key=lambda n: _when(n.seen)):  # child lists in time order
        assert node.seen.envelope is not None
        cause = node.seen.envelope.causation_id
        parent = nodes.get(str(cause)) if cause is not None else None
        (parent.children if parent is not None and parent is not node else roots).append(node)
    return roots


def _when(seen: Seen) -> tuple[datetime, str, int, int]:
    assert seen.envelope is not None
    return seen.envelope.occurred_at, seen.topic, seen.partition, seen.offset


async def collect(settings: CliSettings, order_id: str) -> list[Seen]:
    """Every record of the order on the catalogue's topics and their dead-letter topics."""
    physical = await kafka.catalogue(settings)
    if not physical:
        bootstrap = settings.kafka_bootstrap_servers
        raise CliError(f"none of the catalogue's topics is on the broker at {bootstrap}")
    found: list[Seen] = []
    only = Only(correlation=order_id)
    stream = kafka.records(
        settings.kafka_bootstrap_servers, physical, security=settings.kafka_security
    )
    async for record in stream:
        if only.may_want(record):
            seen = Seen.of(record, settings.logical(record.topic))
            if only.wants(seen):
                found.append(seen)
    if not found:
        raise CliError(f"no records of order {order_id!r} on any topic")
    return found
