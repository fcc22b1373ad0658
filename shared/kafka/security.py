"""How a process proves who it is to Kafka: the one place settings become client options.

PLAINTEXT (the default, `make up`) adds no option at all, so every client is built exactly as it
was before there was a secured profile. SASL_SSL (`make up SECURE=1`) authenticates one
principal per service with SCRAM over TLS and verifies the broker's certificate, host name
included, against `KAFKA_SSL_CAFILE` (the system's CAs without one): a password is never sent
over a connection whose other end is unproven. SASL without TLS is not offered at all.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

SecurityProtocol = Literal["PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: SecurityProtocol = "PLAINTEXT"
    mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None

    def __post_init__(self) -> None:
        if self.secured and not (self.username and self.password):
            raise ValueError("SASL_SSL needs a username and a password")

    @property
    def secured(self) -> bool:
        return self.protocol == "SASL_SSL"

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """One per process and principal: it verifies the broker (CERT_REQUIRED, host names)."""
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client (producer, consumer, admin, client)."""
        if not self.secured:
            return {}
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
            "ssl_context": self.ssl_context,
        }

    def librdkafka(self) -> dict[str, str]:
        """Configuration entries for a confluent-kafka (librdkafka) client."""
        if not self.secured:
            return {}
        options = {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": self.mechanism,
            "sasl.username": self.username or "",
            "sasl.password": self.password or "",
            "ssl.endpoint.identification.algorithm": "https",
        }
        if self.cafile:
            options["ssl.ca.location"] = self.cafile
        return options

    def describe(self) -> str:
        """For logs and status lines; never the password."""
        return f"SASL_SSL ({self.mechanism}) as {self.username}" if self.secured else "PLAINTEXT"


PLAINTEXT = KafkaSecurity()
