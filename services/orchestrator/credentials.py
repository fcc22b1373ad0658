"""The orchestrator's principal as faust takes it: every client faust builds (its consumer,
producer and topic admin) gets the same SASL/SCRAM credentials and TLS context as our own."""

from __future__ import annotations

import faust

from shared.kafka.security import KafkaSecurity


def faust_credentials(security: KafkaSecurity) -> faust.SASLCredentials | None:
    """None on PLAINTEXT: faust's default, so its clients are built as before."""
    if not security.secured:
        return None
    # an SSL context makes faust speak SASL_SSL (faust.auth.SASLCredentials); the mechanism is
    # handed through to aiokafka as it is
    return faust.SASLCredentials(
        username=security.username,
        password=security.password,
        ssl_context=security.ssl_context,
        mechanism=security.mechanism,
    )
