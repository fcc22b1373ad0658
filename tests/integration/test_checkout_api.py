"""Checkout over HTTP on real PostgreSQL and Kafka: the app runs in-process (lifespan, relay
and consumer runner included) against its own database and its own copy of the topics."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import jsonschema_rs
import jwt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from schemas.catalogue import DEAD_LETTER_SUFFIX, TOPICS
from schemas.checkout.v1 import ConfirmOrder
from services.checkout.bootstrap import create_app
from services.checkout.models import CancelOrderRequest
from services.checkout.settings import CheckoutSettings
from shared.auth import DEV_SECRET_NOTE, AuthSettings, mint_token
from shared.envelope import Envelope
from tests.support import eventually, unique

pytestmark = pytest.mark.integration
AUTH = AuthSettings(jwt_secret="integration-test-secret-long-enough-for-hs256")
TEA = {"lines": [{"sku": "TEA-001", "quantity": 2}, {"sku": "CUP-001", "quantity": 1}]}


def bearer(subject: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(AUTH, subject, scopes)}"}


@contextlib.asynccontextmanager
async def running_checkout(
    settings: CheckoutSettings, auth: AuthSettings = AUTH
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (pool, schema, seed, relay, consumer) and a client to it."""
    app = create_app(settings, auth)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://checkout") as client:
            yield client


@dataclass
class Checkout:
    client: httpx.AsyncClient
    settings: CheckoutSettings
    dsn: str

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    async def place(self, customer: str = "alice", **headers: str) -> dict[str, Any]:
        response = await self.client.post("/orders", json=TEA, headers=bearer(customer) | headers)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def rows(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def stream(self, order_id: str) -> list[str]:
        rows = await self.rows(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_version", order_id
        )
        return [r["type"] for r in rows]

    async def outbox_drained(self) -> bool:
        [row] = await self.rows("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
        return bool(row["n"] == 0)


@pytest.fixture
def settings(pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str) -> CheckoutSettings:
    return CheckoutSettings(
        database_url=pg_dsn,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=catalogue_prefix,
        consumer_group=unique("checkout"),
    )


@pytest.fixture
async def checkout(settings: CheckoutSettings, pg_dsn: str) -> AsyncIterator[Checkout]:
    async with running_checkout(settings) as client:
        yield Checkout(client, settings, pg_dsn)


def partition_count(physical: str) -> int:
    """From the catalogue: a prefixed copy has the same partitions, dead-letter topics one."""
    if physical.endswith(DEAD_LETTER_SUFFIX):
        return 1
    return next(t.partitions for t in TOPICS if physical.endswith(t.name))


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every committed record on `topic` up to its current end (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count(topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def published(checkout: Checkout, key: str) -> list[Any]:
    """The records keyed `key` on checkout.events once every outbox row has been published."""
    await eventually(checkout.outbox_drained, bool, what="outbox drained")
    records = await read_topic(checkout.bootstrap, checkout.topic("checkout.events"))
    return [r for r in records if r.key == key.encode()]


async def send_command(checkout: Checkout, envelope: Envelope) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=checkout.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            checkout.topic("checkout.commands"),
            envelope.to_bytes(),
            key=envelope.key.encode(),
            headers=envelope.headers(),
        )
    finally:
        await producer.stop()


async def commands_consumed(checkout: Checkout) -> bool:
    """The group has committed every record now on checkout.commands."""
    topic = checkout.topic("checkout.commands")
    admin = AIOKafkaAdminClient(bootstrap_servers=checkout.bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(checkout.settings.consumer_group)
    finally:
        await admin.close()
    done = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic}
    consumer = AIOKafkaConsumer(bootstrap_servers=checkout.bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partition_count(topic))]
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    return all(end == 0 or done.get(tp.partition, -1) >= end for tp, end in ends.items())


def header(record: Any, name: str) -> str:
    return dict(record.headers)[name].decode()


async def test_a_placed_order_is_published_as_order_placed_v2(checkout: Checkout) -> None:
    response = await checkout.client.post(
        "/orders", json=TEA, headers=bearer("alice") | {"Idempotency-Key": unique("k")}
    )
    assert response.status_code == 201
    order = response.json()
    order_id = order["order_id"]
    assert response.headers["Location"] == f"/orders/{order_id}"
    assert response.headers["ETag"] == '"1"'
    assert (order["total_cents"], order["currency"], order["version"]) == (3150, "EUR", 1)

    [record] = await published(checkout, order_id)
    envelope = Envelope.from_bytes(record.value)
    assert (envelope.type, envelope.version, envelope.producer) == ("OrderPlaced", 2, "checkout")
    assert (envelope.key, envelope.correlation_id) == (order_id, order_id)
    assert header(record, "type") == "OrderPlaced"
    assert header(record, "version") == "2"
    assert header(record, "correlation_id") == order_id
    assert header(record, "event_id") == str(envelope.event_id)
    [stored] = await checkout.rows("SELECT event_id FROM events WHERE stream_id = $1", order_id)
    assert stored["event_id"] == envelope.event_id
    assert envelope.payload["lines"][0] == {
        "sku": "TEA-001",
        "quantity": 2,
        "unit_price_cents": 850,
        "line_total_cents": 1700,
    }


async def test_retried_posts_give_the_same_order_and_one_event(checkout: Checkout) -> None:
    key = {"Idempotency-Key": unique("k")}
    # two at once (the primary key decides) and one after
    racing = await asyncio.gather(*(checkout.place("alice", **key) for _ in range(2)))
    later = await checkout.place("alice", **key)
    assert racing[0] == racing[1] == later
    order_id = later["order_id"]
    assert await checkout.stream(order_id) == ["OrderPlaced"]
    assert len(await published(checkout, order_id)) == 1
    [row] = await checkout.rows("SELECT count(*) AS n FROM events")
    assert row["n"] == 1


async def test_the_same_key_with_another_body_is_refused(checkout: Checkout) -> None:
    key = {"Idempotency-Key": unique("k")}
    first = await checkout.place("alice", **key)
    other = {"lines": [{"sku": "TEA-002", "quantity": 1}]}
    response = await checkout.client.post("/orders", json=other, headers=bearer("alice") | key)
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["type"] == "idempotency_key_reused"
    assert first["order_id"] in problem["msg"]
    [row] = await checkout.rows("SELECT count(*) AS n FROM events")
    assert row["n"] == 1


async def test_an_order_is_visible_to_its_customer_and_admins_only(checkout: Checkout) -> None:
    order_id = (await checkout.place("alice"))["order_id"]
    path = f"/orders/{order_id}"
    mine = await checkout.client.get(path, headers=bearer("alice"))
    theirs = await checkout.client.get(path, headers=bearer("bob"))
    missing = await checkout.client.get(f"/orders/{uuid.uuid4()}", headers=bearer("bob"))
    admin = await checkout.client.get(path, headers=bearer("carol", "admin"))
    anonymous = await checkout.client.get(path)
    assert (mine.status_code, mine.json()["customer_id"]) == (200, "alice")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == {"detail": f"order {order_id} not found"}
    assert admin.status_code == 200
    assert (anonymous.status_code, anonymous.headers["WWW-Authenticate"]) == (401, "Bearer")
    cancel = await checkout.client.post(f"{path}/cancel", headers=bearer("bob"))
    assert cancel.status_code == 404
    assert await checkout.stream(order_id) == ["OrderPlaced"]


async def test_a_stored_v1_order_placed_loads_through_its_upcaster(checkout: Checkout) -> None:
    order_id = str(uuid.uuid4())
    v1 = {
        "order_id": order_id,
        "customer_id": "alice",
        "lines": [{"sku": "TEA-001", "quantity": 3, "unit_price_cents": 850}],
        "total_cents": 2550,
    }
    await checkout.rows(
        "INSERT INTO events (stream_id, stream_version, event_id, type, version, payload)"
        " VALUES ($1, 1, $2, 'OrderPlaced', 1, $3::jsonb)",
        order_id,
        uuid.uuid4(),
        orjson.dumps(v1).decode(),
    )
    response = await checkout.client.get(f"/orders/{order_id}", headers=bearer("alice"))
    assert response.status_code == 200
    order = response.json()
    assert order["currency"] == "EUR"
    assert order["lines"][0]["line_total_cents"] == 2550
    cancelled = await checkout.client.post(f"/orders/{order_id}/cancel", headers=bearer("alice"))
    assert cancelled.json()["status"] == "cancelled"


async def test_an_unknown_sku_is_a_422_naming_it_and_writes_nothing(checkout: Checkout) -> None:
    body = {"lines": [{"sku": "TEA-001", "quantity": 1}, {"sku": "NOPE-404", "quantity": 1}]}
    response = await checkout.client.post(
        "/orders", json=body, headers=bearer("alice") | {"Idempotency-Key": unique("k")}
    )
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert (problem["loc"], problem["input"]) == (["body", "lines", 1, "sku"], "NOPE-404")
    assert "NOPE-404" in problem["msg"]
    for table in ("events", "outbox", "idempotency_keys"):
        [row] = await checkout.rows(f"SELECT count(*) AS n FROM {table}")
        assert row["n"] == 0, table


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_body_is_a_413(checkout: Checkout, chunked: bool) -> None:
    lines = [{"sku": "TEA-001", "quantity": 1}] * 5000  # ~190 KiB of JSON
    payload = orjson.dumps({"lines": lines})

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    response = await checkout.client.post(
        "/orders",
        content=stream() if chunked else payload,
        headers=bearer("alice") | {"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "exceeds" in response.json()["detail"]


async def test_bad_input_is_a_clear_4xx(checkout: Checkout) -> None:
    h = bearer("alice")
    cases: list[tuple[Any, str]] = [
        ({"lines": []}, "too_short"),
        ({"lines": [{"sku": "TEA-001", "quantity": 101}]}, "less_than_equal"),
        ({"lines": [{"sku": "tea 1", "quantity": 1}]}, "string_pattern_mismatch"),
        ({"lines": [{"sku": "TEA-001", "quantity": 1, "price": 1}]}, "extra_forbidden"),
        ({"lines": [{"sku": "TEA-001", "quantity": 1}] * 2}, "value_error"),
    ]
    for body, kind in cases:
        response = await checkout.client.post("/orders", json=body, headers=h)
        assert response.status_code == 422, body
        assert kind in {d["type"] for d in response.json()["detail"]}, response.text
    # input that is valid JSON but cannot be echoed back as UTF-8 JSON, or stored in Postgres
    raw = {
        "/orders": [
            b"{",
            b'{"lines": [{"sku": "\\ud800", "quantity": 1}]}',
            b'{"lines": [{"sku": "TEA-001", "quantity": 1e400}]}',
            b'{"lines": [{"sku": "TEA-001", "quantity": 1180591620717411303424}]}',
            b'{"lines": [{"sku": "TEA-001", "quantity": 1}], "\\u0000": "\\udfff"}',
        ],
        f"/orders/{(await checkout.place())['order_id']}/cancel": [
            b'{"reason": "\\ud800"}',
            b'{"reason": "nul \\u0000 inside"}',
        ],
    }
    json_headers = h | {"Content-Type": "application/json"}
    for path, bodies in raw.items():
        for content in bodies:
            response = await checkout.client.post(path, content=content, headers=json_headers)
            assert response.status_code == 422, (content, response.text)
    [row] = await checkout.rows("SELECT count(*) AS n FROM events")
    assert row["n"] == 1  # the order placed to cancel, nothing else


def confirm_outcomes(checkout: Checkout) -> dict[str, float]:
    """How checkout's consumer settled ConfirmOrder commands, from its metrics."""
    labels = {
        "consumer": checkout.settings.consumer_group,
        "topic": checkout.topic("checkout.commands"),
        "type": "ConfirmOrder",
    }
    return {
        outcome: REGISTRY.get_sample_value(
            "leadline_messages_handled_total", labels | {"outcome": outcome}
        )
        or 0.0
        for outcome in ("applied", "duplicate")
    }


async def test_confirm_order_is_applied_once(checkout: Checkout) -> None:
    order_id = (await checkout.place("alice"))["order_id"]
    command = Envelope.wrap(ConfirmOrder(order_id=order_id), key=order_id, producer="saga")
    await send_command(checkout, command)
    await send_command(checkout, command)  # redelivered: the inbox skips it
    again = Envelope.wrap(ConfirmOrder(order_id=order_id), key=order_id, producer="saga")
    await send_command(checkout, again)  # a new id: the first OrderConfirmed again, no change
    await eventually(lambda: commands_consumed(checkout), bool, what="commands consumed")
    # Confirming a confirmed order changes nothing by itself, so the stream alone cannot tell
    # a working inbox from a broken one: the handler must have run twice (two ids), not three
    # times, and the redelivery must have been recognised as the duplicate it is.
    assert confirm_outcomes(checkout) == {"applied": 2.0, "duplicate": 1.0}
    assert await checkout.stream(order_id) == ["OrderPlaced", "OrderConfirmed"]
    confirmed = [Envelope.from_bytes(r.value) for r in await published(checkout, order_id)][-1]
    assert (confirmed.type, confirmed.causation_id) == ("OrderConfirmed", command.event_id)
    view = await checkout.client.get(f"/orders/{order_id}", headers=bearer("alice"))
    assert (view.json()["status"], view.headers["ETag"]) == ("confirmed", '"2"')
    cancel = await checkout.client.post(f"/orders/{order_id}/cancel", headers=bearer("alice"))
    assert cancel.status_code == 409
    assert "confirmed" in cancel.json()["detail"]


async def test_racing_cancel_and_confirm_leave_one_consistent_outcome(
    checkout: Checkout,
) -> None:
    """A share lock on the events table lets both writers load the order and then holds both
    at their append; released together, one append wins and the other conflicts, reloads and
    is judged by the rules against the winner's state."""
    for round_ in range(4):
        order_id = (await checkout.place("alice"))["order_id"]
        command = Envelope.wrap(ConfirmOrder(order_id=order_id), key=order_id, producer="saga")
        gate = await asyncpg.connect(checkout.dsn)

        async def waiting(expected: int, gate: asyncpg.Connection = gate) -> None:
            await eventually(
                lambda: gate.fetchval(
                    "SELECT count(*) FROM pg_locks"
                    " WHERE relation = 'events'::regclass AND NOT granted"
                ),
                lambda n: n == expected,
                what=f"{expected} writers waiting to append",
            )

        try:
            async with gate.transaction():
                await gate.execute("LOCK TABLE events IN SHARE MODE")
                if round_ % 2:  # alternate who queues first
                    await send_command(checkout, command)
                    await waiting(1)
                cancel = asyncio.create_task(
                    checkout.client.post(
                        f"/orders/{order_id}/cancel",
                        headers=bearer("alice"),
                        json={"reason": "race"},
                    )
                )
                if not round_ % 2:
                    await waiting(1)
                    await send_command(checkout, command)
                await waiting(2)
        finally:
            await gate.close()
        answer = await cancel
        await eventually(lambda: commands_consumed(checkout), bool, what="commands consumed")
        dead = await read_topic(checkout.bootstrap, checkout.topic("checkout.commands") + ".dlq")
        refused = [r for r in dead if Envelope.from_bytes(r.value).event_id == command.event_id]
        stream = await checkout.stream(order_id)
        assert refused == []  # either way an outcome the saga sees, never a dead letter
        if answer.status_code == 200:
            assert stream == ["OrderPlaced", "OrderCancelled"]
            replies = await eventually(
                lambda order_id=order_id: published(checkout, order_id),
                lambda found: any(
                    Envelope.from_bytes(r.value).type == "OrderCommandRefused" for r in found
                ),
                what="the refusal published",
            )
            [reply] = [
                e
                for e in map(Envelope.from_bytes, (r.value for r in replies))
                if e.type == "OrderCommandRefused"
            ]
            assert (reply.payload["command"], reply.payload["status"]) == (
                "ConfirmOrder",
                "cancelled",
            )
        else:
            assert (answer.status_code, refused) == (409, []), answer.text
            assert stream == ["OrderPlaced", "OrderConfirmed"]


async def test_readiness_reports_every_dependency(checkout: Checkout) -> None:
    response = await checkout.client.get("/health/ready")
    assert response.status_code == 200
    assert set(response.json()["checks"]) == {
        "postgres",
        "kafka",
        "relay",
        "outbox_parked",
        "consumer",
    }
    live = await checkout.client.get("/health/live")
    assert live.status_code == 200
    metrics = await checkout.client.get("/metrics")
    assert "leadline_http_requests_total" in metrics.text


async def test_quantities_are_json_integers_only(checkout: Checkout) -> None:
    # the schema says integer: a boolean, a numeric string, or any JSON number with a fraction
    # or an exponent is refused, even when its value is a whole number
    for quantity in (b"true", b'"2"', b"2.0", b"1e2", b"2E0"):
        body = b'{"lines": [{"sku": "TEA-001", "quantity": %s}]}' % quantity
        response = await checkout.client.post(
            "/orders", content=body, headers=bearer("alice") | {"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (quantity, response.text)
        [problem] = response.json()["detail"]
        assert (problem["type"], problem["loc"]) == ("int_type", ["body", "lines", 0, "quantity"])
    [row] = await checkout.rows("SELECT count(*) AS n FROM events")
    assert row["n"] == 0


def test_the_cancel_reason_rule_is_published_and_agrees_with_the_validator() -> None:
    # the document clients see, checked by a JSON Schema validator that is not pydantic
    document = create_app(CheckoutSettings(), AUTH).openapi()
    reason = document["components"]["schemas"]["CancelOrderRequest"]["properties"]["reason"]
    published = jsonschema_rs.validator_for({"type": "string", "pattern": reason["pattern"]})

    def accepted(text: str) -> bool:
        try:
            CancelOrderRequest(reason=text)
        except ValueError:
            return False
        return True

    scalars = (chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    disagree = [c for c in scalars if published.is_valid(f"a{c}b") != accepted(f"a{c}b")]
    assert disagree == []
    assert not published.is_valid("nul \x00")
    assert published.is_valid("tab\tnew\nline 😀")
    # lone surrogates are no Unicode text, so no pattern names them: the description does
    assert not accepted("\ud800")
    assert "surrogate" in reason["description"]


async def test_the_documented_idempotency_key_is_a_placeholder_not_a_key(
    checkout: Checkout,
) -> None:
    # a realistic example is copied by every client, and they all share one key; a placeholder
    # that is not a valid key fails the first copy loudly instead
    document = (await checkout.client.get("/openapi.json")).json()
    parameters = document["paths"]["/orders"]["post"]["parameters"]
    [key] = [p for p in parameters if p["name"] == "Idempotency-Key"]
    for example in key["schema"]["examples"]:
        response = await checkout.client.post(
            "/orders", json=TEA, headers=bearer("alice") | {"Idempotency-Key": example}
        )
        assert response.status_code == 422, example
        assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_a_refused_token_gets_a_fixed_answer(checkout: Checkout) -> None:
    expired = jwt.encode({"sub": "alice", "exp": 1}, AUTH.jwt_secret.get_secret_value())
    forged = mint_token(AuthSettings(jwt_secret="someone-elses-secret-long-enough-for-hs256"), "a")
    for token in (expired, forged, "not.a.token"):
        response = await checkout.client.get(
            f"/orders/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert response.json() == {"detail": "invalid bearer token"}


async def test_readiness_names_the_development_secret_while_it_is_in_use(
    settings: CheckoutSettings,
) -> None:
    local = AuthSettings(environment="local")
    async with running_checkout(settings, local) as client:
        response = await client.get("/health/ready")
        placed = await client.post(
            "/orders", json=TEA, headers={"Authorization": f"Bearer {mint_token(local, 'al')}"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["auth"] == {"ok": True, "note": DEV_SECRET_NOTE}
    assert placed.status_code == 201
