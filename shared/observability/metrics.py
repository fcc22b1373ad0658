"""Prometheus metrics of the backbone. One registry per process (prometheus-client's default);
labels name the consumer, topic and message type so dashboards can slice without parsing logs."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from schemas.registry import REGISTRY


def type_label(type_: str) -> str:
    """A message type as a label value: only registered types, every other one is "unknown".
    Types come from foreign producers too, and each label value is a time series for good."""
    return type_ if REGISTRY.knows(type_) else "unknown"


MESSAGES_HANDLED = Counter(
    "leadline_messages_handled_total",
    "Messages whose handler committed (duplicates included, see outcome).",
    ["consumer", "topic", "type", "outcome"],  # outcome: applied | duplicate | ignored
)
MESSAGES_FAILED = Counter(
    "leadline_messages_failed_total",
    "Handler attempts that raised (each retry counts).",
    ["consumer", "topic", "type"],
)
INBOX_COLLISIONS = Counter(
    "leadline_inbox_collisions_total",
    "Messages refused because their event id was handled before for another message.",
    ["consumer", "topic"],
)
DEAD_LETTERS = Counter(
    "leadline_dead_letters_total",
    "Messages sent to a dead-letter topic.",
    ["consumer", "topic", "reason"],
)
CONSUMER_LAG = Gauge(
    "leadline_consumer_lag",
    "High watermark minus committed offset, per partition.",
    ["consumer", "topic", "partition"],
)
OUTBOX_BACKLOG = Gauge(
    "leadline_outbox_backlog",
    "Outbox rows waiting to be published (parked rows not counted, rows they hold back are).",
    ["relay"],
)
OUTBOX_PUBLISHED = Counter(
    "leadline_outbox_published_total",
    "Outbox rows published to Kafka and marked sent.",
    ["relay", "topic"],
)
OUTBOX_PARKED = Gauge(
    "leadline_outbox_parked",
    "Outbox rows Kafka refused for good, set aside until retried or dropped; each holds back"
    " the later rows of its topic and key (not counted in leadline_outbox_backlog).",
    ["relay"],
)
HANDLER_SECONDS = Histogram(
    "leadline_handler_seconds",
    "Time from receiving a message to committing its transaction.",
    ["consumer", "type"],
)
SAGA_STATES = Gauge(
    "leadline_saga_states",
    "Sagas per state.",
    ["state"],
)
