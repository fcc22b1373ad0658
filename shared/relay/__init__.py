"""The outbox relay (DESIGN §4): publishes outbox rows to Kafka in order per key, at least once.

`python -m shared.relay --dsn … --bootstrap …` runs one as its own process;
`python -m shared.relay parked list|retry|drop` settles the rows Kafka refused for good.
"""

from shared.relay.relay import OutboxRelay

__all__ = ["OutboxRelay"]
