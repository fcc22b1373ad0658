"""The whole system seen from outside, as a customer, an operator and the upstream systems see it.

Only HTTP on the services' public routes, plain Kafka clients (ours and a foreign one) on the
catalogue's topics, and the receipts mailbox folder: nothing here imports a service, so what
the end-to-end tests observe is what a deployment shows. One `Outside` is meant to serve a
whole test module (starting every process is the slow part); tests keep out of each other's way
with their own customers, orders and SKUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import asyncpg
import confluent_kafka
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.catalogue import TOPICS
from schemas.warehouse.v1 import StockReceived
from shared.envelope import Envelope
from tests.conftest import Infra
from tests.support import eventually
from tests.support.processes import catalogue_copy
from tests.support.system import System, bearer, databases, running_system

TERMINAL = frozenset({"completed", "rejected", "cancelled", "failed"})
ADMIN = bearer("ops", "admin")


@dataclass(frozen=True)
class Raw:
    """One Kafka record as a plain consumer sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]

    def __repr__(self) -> str:  # what a failing assertion shows: where, which, and why
        return (
            f"<{self.topic}:{self.partition}:{self.offset} key={self.key!r}"
            f" reason={self.header('dlq.reason')} consumer={self.header('dlq.consumer')}>"
        )

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode(errors="replace")


class Outside:
    """A running system and the prefix of its topics."""

    def __init__(
        self, system: System, prefix: str, bootstrap: str, databases: Mapping[str, str]
    ) -> None:
        self.system = system
        self.prefix = prefix
        self.bootstrap = bootstrap
        self.http = system.http
        self._databases = databases

    def topic(self, name: str) -> str:
        return self.prefix + name

    def url(self, service: str, path: str) -> str:
        return self.system.url(service, path)

    # ---------------------------------------------------------------- as a customer

    async def place(
        self, customer: str, lines: list[dict[str, Any]], *, key: str | None = None
    ) -> httpx.Response:
        headers = bearer(customer) | ({"Idempotency-Key": key} if key else {})
        return await self.http.post(
            self.url("checkout", "/orders"), json={"lines": lines}, headers=headers
        )

    async def placed(self, customer: str, lines: list[dict[str, Any]]) -> str:
        """The id of a newly placed order (201 asserted)."""
        response = await self.place(customer, lines)
        assert response.status_code == 201, response.text
        order_id: str = response.json()["order_id"]
        return order_id

    async def cancel(self, customer: str, order_id: str) -> httpx.Response:
        return await self.http.post(
            self.url("checkout", f"/orders/{order_id}/cancel"),
            json={"reason": "changed my mind"},
            headers=bearer(customer),
        )

    async def order(self, customer: str, order_id: str) -> dict[str, Any]:
        response = await self.http.get(
            self.url("checkout", f"/orders/{order_id}"), headers=bearer(customer)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def read_model(
        self, customer: str, order_id: str, min_version: int
    ) -> tuple[int, dict[str, Any]]:
        """The projection's order view, waiting (its bounded wait) for `min_version`."""
        response = await self.http.get(
            self.url("projection", f"/orders/{order_id}"),
            params={"min_version": min_version},
            headers=bearer(customer),
        )
        return response.status_code, response.json()

    # ---------------------------------------------------------------- as an operator

    async def saga(self, order_id: str) -> dict[str, Any]:
        """The orchestrator's view of the order's saga; `status` None until it has one."""
        response = await self.http.get(
            self.url("orchestrator", f"/sagas/{order_id}"), headers=ADMIN
        )
        return response.json() if response.status_code == 200 else {"status": None}

    async def saga_in(self, order_id: str, status: str) -> dict[str, Any]:
        return await eventually(
            lambda: self.saga(order_id),
            lambda s: s["status"] == status,
            timeout=60,
            what=f"saga of {order_id} {status}",
        )

    async def saga_ends(self, order_id: str, timeout: float = 60.0) -> dict[str, Any]:
        return await eventually(
            lambda: self.saga(order_id),
            lambda s: s["status"] in TERMINAL,
            timeout=timeout,
            what=f"saga of {order_id} ended",
        )

    async def stock(self, sku: str) -> dict[str, int]:
        """on_hand, reserved and available as inventory has them now."""
        response = await self.http.get(self.url("inventory", f"/stock/{sku}"))
        assert response.status_code == 200, response.text
        body = response.json()
        return {k: body[k] for k in ("on_hand", "reserved", "available")}

    async def payment(self, order_id: str) -> dict[str, Any]:
        """What the payment provider decided for the order (404 body when it saw nothing)."""
        response = await self.http.get(
            self.url("simulator", f"/payments/{order_id}"), headers=ADMIN
        )
        body: dict[str, Any] = response.json()
        return body

    async def knobs(self, **change: Any) -> dict[str, Any]:
        response = await self.http.put(self.url("simulator", "/knobs"), json=change, headers=ADMIN)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    @contextlib.asynccontextmanager
    async def knobs_turned(self, **change: Any) -> AsyncIterator[None]:
        """The simulator's knobs changed for the block, then set back as they were."""
        before = (await self.http.get(self.url("simulator", "/knobs"))).json()
        await self.knobs(**change)
        try:
            yield
        finally:
            await self.knobs(**before)

    async def lose_queued_answers(self, order_id: str) -> int:
        """A fault in transit: the provider's answers still waiting for the order are taken
        as sent and never reach Kafka (what a provider whose broker lost an acknowledged
        record would show). The one reach past the public surface, into the upstream stand-in's
        own records; returns how many were lost."""
        conn = await asyncpg.connect(self._databases["simulator"])
        try:
            status = await conn.execute(
                "UPDATE answers SET sent_at = clock_timestamp()"
                " WHERE order_id = $1 AND sent_at IS NULL",
                order_id,
            )
        finally:
            await conn.close()
        return int(status.rpartition(" ")[2])

    def mails(self) -> dict[str, EmailMessage]:
        """Every receipt mailed so far, by file name."""
        found: dict[str, EmailMessage] = {}
        for path in sorted(self.system.mailbox.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
            assert isinstance(message, EmailMessage)
            found[path.name] = message
        return found

    def mails_about(self, order_id: str) -> dict[str, EmailMessage]:
        return {name: m for name, m in self.mails().items() if order_id in _text(m)}

    @contextlib.contextmanager
    def paused(self, service: str) -> Iterator[None]:
        """The service's process stopped (SIGSTOP) for the block: it holds whatever it was
        sent until resumed (SIGCONT), as a stalled host would."""
        proc = self.system.procs[service].proc
        assert proc is not None
        proc.send_signal(19)  # SIGSTOP
        try:
            yield
        finally:
            proc.send_signal(18)  # SIGCONT

    # ---------------------------------------------------------------- as upstream / on Kafka

    async def receive_stock(self, sku: str, quantity: int) -> None:
        """The warehouse announces an arrival on `warehouse.events`, keyed by SKU."""
        arrival = StockReceived(sku=sku, quantity=quantity, shipment_id=f"shp-{uuid.uuid4().hex}")
        envelope = Envelope.wrap(arrival, key=sku, producer="warehouse")
        await self.produce(
            "warehouse.events", envelope.to_bytes(), key=sku.encode(), headers=envelope.headers()
        )

    async def produce(
        self,
        name: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """One record onto catalogue topic `name`, as an aiokafka client would send it (onto
        `partition` when given, else where its key hashes)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                self.topic(name), value, key=key, headers=headers or [], partition=partition
            )
        finally:
            await producer.stop()

    async def produce_foreign(
        self, name: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        """One record sent by librdkafka with its own defaults (CRC32 key hashing among them),
        as a producer we do not own would send it."""

        def send() -> None:
            producer = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap})
            failures: list[Any] = []
            producer.produce(
                self.topic(name),
                value,
                key,
                headers=headers,
                on_delivery=lambda err, _msg: failures.append(err) if err else None,
            )
            assert producer.flush(30) == 0, "not delivered within 30 s"
            assert not failures, failures

        await asyncio.to_thread(send)

    async def records(self, name: str) -> list[Raw]:
        """Every record now on topic `name` (a catalogue name, or one of its `.dlq`s)."""
        return await read_topic(self.bootstrap, self.topic(name))


def _text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    return "" if body is None else str(body.get_content())  # type: ignore[attr-defined]


async def read_topic(bootstrap: str, topic: str) -> list[Raw]:
    """Every record on `topic` up to its end offsets now, with no consumer group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"topic {topic} does not exist"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[Raw] = []
        while pending := [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for tp, batch in (await consumer.getmany(*pending, timeout_ms=500)).items():
                found += [
                    Raw(topic, tp.partition, r.offset, r.key, r.value, dict(r.headers))
                    for r in batch
                    if r.offset < ends[tp]
                ]
        return found
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def whole_system(infra: Infra, tmp: Path, **extra_env: str) -> AsyncIterator[Outside]:
    """Every service, the read side and the payment simulator, on fresh databases and a fresh
    copy of the catalogue's topics (deleted afterwards, the services' own ones too)."""
    bootstrap = infra.kafka_bootstrap
    async with (
        catalogue_copy(bootstrap, "e2e") as prefix,
        databases(infra.postgres_dsn) as dsns,
        running_system(dsns, prefix, bootstrap, tmp, with_projection=True, **extra_env) as system,
    ):
        yield Outside(system, prefix, bootstrap, dsns)


def consumed_topics() -> list[str]:
    """Every catalogue topic some service or the simulator consumes (all of them: the
    orchestrator's deadlines included, the warehouse's by inventory)."""
    return [t.name for t in TOPICS]
