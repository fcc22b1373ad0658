"""A SIMULATOR of the upstream payment provider, not a Leadline service (DESIGN §1, issue 9).

It stands in for a foreign system: it consumes our `payments.requests` (RequestPayment,
VoidPayment) and answers on `payments.events` (PaymentAuthorized, PaymentDeclined,
PaymentVoided) the way a provider's own client would, with confluent-kafka (librdkafka) and its
CRC32 partitioner rather than our murmur2 producers, so whatever needs co-partitioning must
re-key its records. Its knobs (approval rate, latency, a mode that never answers) are settings
at start and can be turned over HTTP while it runs, so tests can exercise declines, slowness
and deadlines. `python -m simulators.payment_provider` runs it (port 8009 under `make run`).
"""
