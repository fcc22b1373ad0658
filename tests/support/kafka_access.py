"""Probes of what a Kafka principal is let do: connect, and write one record as the services'
idempotent producers do. Used against the bare-machine secured broker and the compose one."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka.producer import DeliveryError, OutgoingMessage, Producer
from shared.kafka.security import KafkaSecurity
from tests.support import unique


async def cluster_id(bootstrap: str, security: KafkaSecurity) -> str:
    """The cluster's id, as `security` connects; KafkaConnectionError when it is refused."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, **security.aiokafka()
    )
    try:
        async with asyncio.timeout(60):
            await admin.start()
            return str((await admin.describe_cluster())["cluster_id"])
    finally:
        await admin.close()


async def write(
    bootstrap: str, security: KafkaSecurity, topic: str, value: bytes = b"{}"
) -> BaseException | None:
    """Produce one record as the idempotent producers of the services do; the refusal, if any."""
    producer = Producer(bootstrap, client_id=unique("acl-probe"), security=security)
    try:
        await producer.send_all([OutgoingMessage(topic, b"probe", value, [])])
        return None
    except DeliveryError as exc:
        return exc.cause
    finally:
        await producer.stop()
