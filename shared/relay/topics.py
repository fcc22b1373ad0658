"""Which topics Kafka says cannot be written to, asked before a batch is sent.

The producer, handed a record for a topic it has no metadata for, waits `request_timeout_ms`
for it to appear and then raises, so a missing topic would cost every relay pass that long and
could not be told from a broker that stopped answering. A metadata request naming the topics is
answered at once, topic by topic; a failed request is an ordinary transient error.

A topic the broker does not know is refused only once it has been missing for `missing_grace`
seconds (it may be being created); a name Kafka rejects, or one this client may not write, is
refused at once. Topics seen present are not asked about again until the producer finds one
missing (`forget`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    InvalidTopicError,
    NoError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from aiokafka.protocol.metadata import MetadataRequest

from shared.kafka.security import PLAINTEXT, KafkaSecurity

_REFUSED_AT_ONCE = {
    InvalidTopicError.errno: "Kafka rejects the topic name",
    TopicAuthorizationFailedError.errno: "this client may not write to the topic",
}


class TopicCheck:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        missing_grace: float,
        timeout_ms: int,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._security = security
        self._client_id = client_id
        self._grace = missing_grace
        self._timeout_ms = timeout_ms
        self._client: Any = None
        self._present: set[str] = set()
        self._missing_since: dict[str, float] = {}

    async def verdicts(self, topics: Iterable[str]) -> dict[str, str | None]:
        """The topics whose rows must not be sent now: topic → why Kafka refuses them for good,
        or None while a missing one is within its grace. Raises KafkaError or OSError when the
        broker does not answer."""
        unknown = sorted(set(topics) - self._present)
        if not unknown:
            return {}
        verdicts: dict[str, str | None] = {}
        for code, topic in await self._ask(unknown):
            if code == UnknownTopicOrPartitionError.errno:
                since = self._missing_since.setdefault(topic, time.monotonic())
                missing = time.monotonic() - since
                verdicts[topic] = (
                    f"topic {topic!r} does not exist (missing for {missing:.0f} s)"
                    if missing >= self._grace
                    else None
                )
            elif code in _REFUSED_AT_ONCE:
                verdicts[topic] = f"{_REFUSED_AT_ONCE[code]}: {topic!r}"
            else:
                # anything else (no leader yet, …) is the producer's to wait out
                self._missing_since.pop(topic, None)
                if code == NoError.errno:
                    self._present.add(topic)
        return verdicts

    def forget(self, topic: str) -> None:
        """The producer found `topic` missing after all (deleted since): ask again."""
        self._present.discard(topic)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _ask(self, topics: list[str]) -> list[tuple[int, str]]:
        try:
            client = await self._connected()
            node = client.get_random_node()
            if node is None:
                raise ConnectionError("no Kafka broker known")
            # never auto-create: topics come from the catalogue, not from a relayed row
            request = MetadataRequest(topics, allow_auto_topic_creation=False)
            response = await client.send(node, request)
        except BaseException:
            await self.close()
            raise
        return [(t["error_code"], t["topic"]) for t in response.to_object()["topics"]]

    async def _connected(self) -> Any:
        if self._client is None:
            client = AIOKafkaClient(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                request_timeout_ms=self._timeout_ms,
                **self._security.aiokafka(),
            )
            try:
                await client.bootstrap()
            except BaseException:
                await client.close()
                raise
            self._client = client
        return self._client
