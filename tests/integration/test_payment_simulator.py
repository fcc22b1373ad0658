"""The payment-provider simulator on real Kafka and PostgreSQL: its app runs in this process
(lifespan: pool, schema, consumer runner, publisher) against its own database and its own copy of
the topics, driven as the saga and the end-to-end tests will drive it — requests on
`payments.requests`, answers read back from `payments.events`, knobs turned over HTTP.

Silence is never proved by waiting: a later request on the same partition being answered shows
the earlier one was handled (a partition is handled in order) and left unanswered."""

from __future__ import annotations

import contextlib
import signal
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from schemas.catalogue import SAGA_PARTITIONS
from schemas.payments.v1 import RequestPayment, VoidPayment
from schemas.registry import Message
from shared.auth import AuthSettings, mint_token
from shared.envelope import Envelope, deterministic_id
from simulators.payment_provider import domain
from simulators.payment_provider.bootstrap import create_app
from simulators.payment_provider.handlers import PRODUCER
from simulators.payment_provider.settings import Partitioner, SimulatorSettings
from tests.support import eventually, unique
from tests.support.processes import ServiceProcess, produce

pytestmark = pytest.mark.integration
AUTH = AuthSettings(jwt_secret="payment-simulator-test-secret-long-enough-for-hs256")
ADMIN = {"Authorization": f"Bearer {mint_token(AUTH, 'ops', ['admin'])}"}
CUSTOMER = {"Authorization": f"Bearer {mint_token(AUTH, 'alice')}"}


def murmur2_partition(key: str, partitions: int = SAGA_PARTITIONS) -> int:
    """Where our producers (aiokafka, like the Java client) put `key`."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def crc32_partition(key: str, partitions: int = SAGA_PARTITIONS) -> int:
    """Where librdkafka's default `consistent_random` partitioner puts a non-empty key."""
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True)
class Received:
    partition: int
    timestamp_ms: int
    headers: dict[str, bytes]
    envelope: Envelope


async def records(bootstrap: str, topic: str) -> list[Received]:
    """Every record now on `topic`, with its partition, timestamp and headers."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[Received] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                found.extend(
                    Received(
                        tp.partition, r.timestamp, dict(r.headers), Envelope.from_bytes(r.value)
                    )
                    for r in batch
                )
        return found
    finally:
        await consumer.stop()


@dataclass
class Simulator:
    client: httpx.AsyncClient
    settings: SimulatorSettings

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers

    @property
    def requests(self) -> str:
        return self.settings.topic("payments.requests")

    @property
    def events(self) -> str:
        return self.settings.topic("payments.events")

    async def send(self, *envelopes: Envelope) -> None:
        await produce(self.bootstrap, self.requests, envelopes)

    async def answers(self, *order_ids: str) -> list[Received]:
        return [
            r for r in await records(self.bootstrap, self.events) if r.envelope.key in order_ids
        ]

    async def answered(self, order_id: str, count: int = 1) -> list[Received]:
        """The order's answers once there are `count` of them (more would fail later asserts)."""
        return await eventually(
            lambda: self.answers(order_id),
            lambda found: len(found) >= count,
            what=f"{count} answer(s) for {order_id}",
        )

    async def knobs(self, **change: Any) -> dict[str, Any]:
        response = await self.client.put("/knobs", json=change, headers=ADMIN)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def payment(self, order_id: str) -> dict[str, Any]:
        found = await self.seen(order_id)
        assert found is not None, f"the simulator has seen nothing of {order_id}"
        return found

    async def seen(self, order_id: str) -> dict[str, Any] | None:
        """What the simulator decided for the order (`GET /payments/…`), None before it saw any."""
        response = await self.client.get(f"/payments/{order_id}", headers=ADMIN)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def pay(order_id: str, customer_id: str = "alice", amount_cents: int = 1250) -> Envelope:
    message = RequestPayment(
        order_id=order_id, customer_id=customer_id, amount_cents=amount_cents, currency="EUR"
    )
    return _wrap(message, order_id)


def void(order_id: str) -> Envelope:
    return _wrap(VoidPayment(order_id=order_id, reason="order cancelled"), order_id)


def _wrap(message: Message, order_id: str) -> Envelope:
    return Envelope.wrap(message, key=order_id, producer="orchestrator")


def same_partition_as(order_id: str) -> str:
    """A new order id our producers put on the same requests partition as `order_id`."""
    while murmur2_partition(other := unique("order")) != murmur2_partition(order_id):
        pass
    return other


def settings_for(pg_dsn: str, kafka_bootstrap: str, prefix: str, **knobs: Any) -> SimulatorSettings:
    return SimulatorSettings(
        database_url=pg_dsn,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix,
        consumer_group=unique("simulator"),
        publish_poll_ms=10,
        **knobs,
    )


@contextlib.asynccontextmanager
async def running(settings: SimulatorSettings) -> AsyncIterator[Simulator]:
    app = create_app(settings, AUTH)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simulator") as client:
            yield Simulator(client, settings)


@pytest.fixture
async def simulator(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str
) -> AsyncIterator[Simulator]:
    async with running(settings_for(pg_dsn, kafka_bootstrap, catalogue_prefix)) as sim:
        yield sim


async def test_a_request_is_authorized_once_and_a_repeat_is_answered_under_the_same_id(
    simulator: Simulator,
) -> None:
    order = unique("order")
    first, repeat = pay(order), pay(order)  # the saga re-sent it under a new event id
    await simulator.send(first, first)  # the very same record twice: a producer retry
    await simulator.send(repeat)

    # the repeat's answer is queued, so the partition got past all three records
    await eventually(
        lambda: simulator.seen(order),
        lambda p: p is not None and [a["sent_at"] is not None for a in p["answers"]] == [True] * 2,
        what="two answers queued and sent",
    )
    answers = await simulator.answers(order)
    assert len(answers) == 2  # one per event id: the duplicate record was dropped
    expected_id = deterministic_id(PRODUCER, order, "authorized")
    assert {a.envelope.event_id for a in answers} == {expected_id}
    assert [a.envelope.causation_id for a in answers] == [first.event_id, repeat.event_id]
    answer = answers[0]
    assert answer.envelope.type == "PaymentAuthorized"
    assert answer.envelope.producer == PRODUCER
    assert answer.envelope.correlation_id == order
    assert answer.envelope.payload == {
        "order_id": order,
        "payment_id": domain.payment_id(order),
        "amount_cents": 1250,
    }
    assert answer.headers["type"] == b"PaymentAuthorized"
    assert answer.headers["event_id"] == str(expected_id).encode()
    payment = await simulator.payment(order)
    assert (payment["status"], payment["customer_id"]) == ("authorized", "alice")


async def test_a_customer_id_starting_with_decline_is_declined(simulator: Simulator) -> None:
    order = unique("order")
    await simulator.send(pay(order, customer_id="decline-bob"))
    [answer] = await simulator.answered(order)
    assert answer.envelope.type == "PaymentDeclined"
    assert answer.envelope.payload == {"order_id": order, "reason": domain.DECLINED_BY_CUSTOMER}
    assert answer.envelope.event_id == deterministic_id(PRODUCER, order, "declined")


async def test_a_customer_id_starting_with_silent_is_never_answered(simulator: Simulator) -> None:
    silent = unique("order")
    later = same_partition_as(silent)
    await simulator.send(pay(silent, customer_id="silent-carol"), pay(later))

    await simulator.answered(later)
    assert await simulator.answers(silent) == []
    payment = await simulator.payment(silent)
    assert (payment["status"], payment["answers"]) == ("unanswered", [])


async def test_silent_mode_answers_no_request_but_still_every_void(simulator: Simulator) -> None:
    assert (await simulator.knobs(mode="silent"))["mode"] == "silent"
    swallowed = unique("order")
    voided = same_partition_as(swallowed)
    await simulator.send(pay(swallowed), void(voided))

    # the saga's compensation completes even while requests go unanswered
    [answer] = await simulator.answered(voided)
    assert answer.envelope.type == "PaymentVoided"
    assert await simulator.answers(swallowed) == []
    assert (await simulator.payment(swallowed))["status"] == "unanswered"

    # answering again: the swallowed request, re-sent, is decided now
    await simulator.knobs(mode="answer")
    await simulator.send(pay(swallowed))
    [answer] = await simulator.answered(swallowed)
    assert answer.envelope.type == "PaymentAuthorized"


async def test_a_void_names_the_authorization_or_none_and_a_later_request_is_declined(
    simulator: Simulator,
) -> None:
    authorized, never_requested = unique("order"), unique("order")
    await simulator.send(pay(authorized))
    await simulator.answered(authorized)
    await simulator.send(void(authorized), void(never_requested))

    answers = await simulator.answered(authorized, 2)
    assert [a.envelope.type for a in answers] == ["PaymentAuthorized", "PaymentVoided"]
    assert answers[1].envelope.payload == {
        "order_id": authorized,
        "payment_id": domain.payment_id(authorized),
    }
    [nothing] = await simulator.answered(never_requested)
    assert nothing.envelope.type == "PaymentVoided"
    assert nothing.envelope.payload == {"order_id": never_requested, "payment_id": None}

    # the saga's RequestPayment overtaken by its VoidPayment: declined, never authorized
    late = pay(never_requested)
    await simulator.send(late)
    answers = await simulator.answered(never_requested, 2)
    assert answers[1].envelope.type == "PaymentDeclined"
    assert answers[1].envelope.payload["reason"] == domain.DECLINED_AFTER_VOID
    assert answers[1].envelope.causation_id == late.event_id
    assert (await simulator.payment(never_requested))["status"] == "voided"


async def test_an_answer_is_not_sent_before_the_latency(simulator: Simulator) -> None:
    latency_ms = 800
    await simulator.knobs(latency_ms=latency_ms)
    order = unique("order")
    request = pay(order)
    await simulator.send(request)

    [answer] = await simulator.answered(order)
    [sent] = [
        r
        for r in await records(simulator.bootstrap, simulator.requests)
        if r.envelope.event_id == request.event_id
    ]
    # both timestamps are the producers' clocks on this machine (CreateTime)
    assert answer.timestamp_ms - sent.timestamp_ms >= latency_ms
    # marked sent once Kafka acknowledged it, which is after it fell due
    [queued] = await eventually(
        lambda: _answers_queued(simulator, order),
        lambda queued: all(a["sent_at"] for a in queued),
        what="the answer marked sent",
    )
    sent_at, due_at = (datetime.fromisoformat(queued[k]) for k in ("sent_at", "due_at"))
    assert sent_at >= due_at


async def test_knobs_are_turned_over_http_with_an_admin_token_and_apply_at_once(
    simulator: Simulator,
) -> None:
    client = simulator.client
    start = {"approval_rate": 1.0, "latency_ms": 0, "mode": "answer"}
    assert (await client.get("/knobs")).json() == start
    assert (await client.put("/knobs", json={"mode": "silent"})).status_code == 401
    response = await client.put("/knobs", json={"mode": "silent"}, headers=CUSTOMER)
    assert response.status_code == 403
    for bad in (
        {"approval_rate": 1.5},
        {"approval_rate": -0.1},
        {"latency_ms": -1},
        {"latency_ms": "soon"},
        {"mode": "loud"},
        {"volume": 11},
    ):
        response = await client.put("/knobs", json=bad, headers=ADMIN)
        assert response.status_code == 422, bad
    assert (await client.get("/knobs")).json() == start  # nothing refused changed anything

    changed = await simulator.knobs(approval_rate=0.0)
    assert changed == {**start, "approval_rate": 0.0}  # a partial change keeps the rest
    order = unique("order")
    await simulator.send(pay(order))
    [answer] = await simulator.answered(order)
    assert answer.envelope.type == "PaymentDeclined"
    assert answer.envelope.payload["reason"] == domain.declined_by_rate(0.0)

    assert (await client.get(f"/payments/{order}")).status_code == 401
    assert (await client.get(f"/payments/{order}", headers=CUSTOMER)).status_code == 403
    assert (await client.get("/payments/nobody", headers=ADMIN)).status_code == 404
    metrics = (await client.get("/metrics")).text
    assert (
        'leadline_simulator_payment_requests_total{outcome="declined",type="RequestPayment"}'
        in (metrics)
    )
    assert 'leadline_simulator_payment_answers_total{type="PaymentDeclined"}' in metrics


async def _answers_queued(simulator: Simulator, order_id: str) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = (await simulator.payment(order_id))["answers"]
    return answers


@pytest.mark.parametrize("partitioner", ["crc32", "murmur2"])
async def test_answers_land_where_the_chosen_partitioner_puts_them(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str, partitioner: Partitioner
) -> None:
    settings = settings_for(pg_dsn, kafka_bootstrap, catalogue_prefix, partitioner=partitioner)
    orders = [unique("order") for _ in range(60)]
    async with running(settings) as sim:
        await sim.send(*(pay(o) for o in orders))
        answers = await eventually(
            lambda: sim.answers(*orders),
            lambda found: len(found) == len(orders),
            what="every order answered",
        )
    where = {a.envelope.key: a.partition for a in answers}
    expected = crc32_partition if partitioner == "crc32" else murmur2_partition
    assert where == {o: expected(o) for o in orders}
    differ = [o for o in orders if crc32_partition(o) != murmur2_partition(o)]
    # with 6 partitions the two hashes agree on about one key in six
    assert len(differ) > len(orders) // 2
    if partitioner == "crc32":
        # the point: an answer is not on its request's partition number, so a consumer of
        # both topics that relied on co-partitioning would see the order's messages split
        assert sum(where[o] != murmur2_partition(o) for o in orders) == len(differ)


async def test_the_simulator_runs_as_its_own_process(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str, tmp_path: Path
) -> None:
    env = {
        "SIMULATOR_DATABASE_URL": pg_dsn,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
        "SIMULATOR_CONSUMER_GROUP": unique("simulator"),
        "SIMULATOR_APPROVAL_RATE": "0",
    }
    proc = ServiceProcess(
        "payment_provider",
        env,
        tmp_path / "simulator.log",
        package="simulators",
        env_prefix="SIMULATOR",
    )
    proc.start()
    try:
        await proc.ready()
        base = f"http://127.0.0.1:{proc.port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            ready = (await client.get("/health/ready")).json()
            assert {"consumer", "publisher", "postgres", "kafka"} <= set(ready["checks"])
            assert (await client.get("/knobs")).json()["approval_rate"] == 0.0  # from the env
            # LEADLINE_ENV=local: a token signed with the public development secret opens it
            dev = mint_token(AuthSettings(environment="local"), "ops", ["admin"])
            response = await client.put(
                "/knobs", json={"approval_rate": 1}, headers={"Authorization": f"Bearer {dev}"}
            )
            assert response.status_code == 200, response.text
        order = unique("order")
        await produce(kafka_bootstrap, catalogue_prefix + "payments.requests", [pay(order)])
        [answer] = await eventually(
            lambda: records(kafka_bootstrap, catalogue_prefix + "payments.events"),
            lambda found: len(found) >= 1,
            what="the process answered",
        )
        assert (answer.envelope.key, answer.envelope.type) == (order, "PaymentAuthorized")
    finally:
        # uvicorn re-raises the SIGTERM it handled once shutdown is complete
        assert proc.stop() == -signal.SIGTERM, proc.tail()
    assert "Application shutdown complete" in proc.log.read_text()
