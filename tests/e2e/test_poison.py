"""Poison on every topic the system consumes, sent from outside by plain producers (ours and a
foreign librdkafka one): bytes that are no JSON, an envelope whose payload breaks its schema,
and a type nobody knows. Each ends on its topic's dead-letter topic with the reason in its
headers, and no partition stalls behind it: orders placed afterwards go all the way."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import murmur2

from schemas.catalogue import SAGA_PARTITIONS, TOPICS, topic
from shared.envelope import Envelope
from tests.conftest import Infra
from tests.support import eventually
from tests.support.outside import Outside, Raw, whole_system

pytestmark = pytest.mark.e2e

# who consumes each catalogue topic, by the consumer name its dead letters carry (the topic
# prefix taken off); each must dead-letter what it cannot read
CONSUMERS: dict[str, set[str]] = {
    "checkout.commands": {"checkout"},
    "checkout.events": {
        "leadline-orchestrator",
        "receipts",
        "projection.orders",
        "projection.outcomes",
        "projection.sales",
    },
    "inventory.commands": {"inventory"},
    "inventory.events": {"leadline-orchestrator", "projection.orders", "projection.stock"},
    "receipts.commands": {"receipts"},
    "receipts.events": {"leadline-orchestrator", "projection.orders"},
    "payments.requests": {"payment-provider-simulator"},
    "payments.events": {"leadline-orchestrator", "projection.orders"},
    "orchestrator.deadlines": {"leadline-orchestrator"},
    "warehouse.events": {"inventory"},
}
# an envelope of a known type with a bad payload is only read by the consumers handling that
# type (the first type of the topic, below); the others skip it quietly, as DESIGN §4 says
VALIDATING: dict[str, set[str]] = {
    **CONSUMERS,
    "checkout.events": CONSUMERS["checkout.events"] - {"projection.outcomes"},  # OrderPlaced
    "inventory.events": {"leadline-orchestrator", "projection.orders"},  # StockReserved
}


@pytest.fixture(scope="module")
async def outside(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outside]:
    async with whole_system(infra, tmp_path_factory.mktemp("poison")) as made:
        yield made


def envelope(type_: str, key: str, payload: dict[str, object]) -> Envelope:
    """An envelope as a careless producer writes it: nothing checks the payload against the
    type's model (`Envelope.wrap` would)."""
    return Envelope(
        event_id=uuid.uuid4(),
        type=type_,
        version=1,
        occurred_at=datetime.now(UTC),
        producer="e2e-poison",
        key=key,
        correlation_id=key,
        payload=payload,
    )


def partitions(name: str) -> range:
    return range(topic(name).partitions)


async def poison(outside: Outside, name: str) -> dict[str, str]:
    """Poison on every partition of `name`; returns each record's key -> the reason expected."""
    expected: dict[str, str] = {}
    # the type this topic carries first: some consumer of the topic handles it, so validates it
    handled = topic(name).message_types[0]
    for p in partitions(name):
        key = f"poison-garbage-{p}-{uuid.uuid4().hex[:8]}"
        await outside.produce(name, b"\x00\xff not json {", key=key.encode(), partition=p)
        expected[key] = "invalid-envelope"
        key = f"poison-schema-{p}-{uuid.uuid4().hex[:8]}"
        bad = envelope(handled, key, {"order_id": key, "sku": 17, "unexpected": True})
        await outside.produce(
            name, bad.to_bytes(), key=key.encode(), headers=bad.headers(), partition=p
        )
        expected[key] = "schema-violation"
    # and from a foreign client, keyed as librdkafka hashes keys
    key = f"poison-unknown-{uuid.uuid4().hex[:8]}"
    unknown = envelope("NoSuchThingHappened", key, {"order_id": key})
    await outside.produce_foreign(
        name, unknown.to_bytes(), key=key.encode(), headers=unknown.headers()
    )
    expected[key] = "unknown-type"
    return expected


def about(letters: list[Raw], keys: Iterable[str]) -> dict[str, list[Raw]]:
    found: dict[str, list[Raw]] = {k: [] for k in keys}
    for letter in letters:
        key = None if letter.key is None else letter.key.decode()
        if key in found:
            found[key].append(letter)
    return found


def consumers(outside: Outside, letters: list[Raw]) -> set[str]:
    return {(x.header("dlq.consumer") or "").removeprefix(outside.prefix) for x in letters}


def partition_of(key: str, partitions: int) -> int:
    """Where our producers (aiokafka, murmur2 like the Java client) put `key`."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


async def test_poison_on_every_consumed_topic_is_dead_lettered_with_its_reason_and_stalls_nothing(
    outside: Outside,
) -> None:
    assert set(CONSUMERS) == {t.name for t in TOPICS}  # every catalogue topic is consumed
    sent = {name: await poison(outside, name) for name in CONSUMERS}

    def expected(name: str, reason: str) -> set[str]:
        return VALIDATING[name] if reason == "schema-violation" else CONSUMERS[name]

    async def letters() -> dict[str, dict[str, list[Raw]]]:
        return {
            name: about(await outside.records(topic(name).dead_letter), keys)
            for name, keys in sent.items()
        }

    async def missing() -> dict[str, set[str]]:
        """Per poison record, the consumers whose dead letter is not there yet."""
        return {
            f"{name} {key}": lacking
            for name, by_key in (await letters()).items()
            for key, found in by_key.items()
            if (lacking := expected(name, sent[name][key]) - consumers(outside, found))
        }

    await eventually(missing, lambda m: not m, timeout=90, what="every poison dead-lettered")
    found = await letters()
    for name, by_key in found.items():
        for key, letters in by_key.items():
            reason = sent[name][key]
            assert consumers(outside, letters) == expected(name, reason), (name, key)
            for x in letters:
                assert x.header("dlq.reason") == reason, (name, key)
                assert x.header("dlq.error"), (name, key)
                assert x.header("dlq.origin.topic") == outside.topic(name), (name, key)

    # nothing stalled: orders on every partition of the saga's topics go all the way
    orders: dict[int, str] = {}
    for i in range(100):
        order_id = await outside.placed(f"after-poison-{i}", [{"sku": "TEA-001", "quantity": 1}])
        orders.setdefault(partition_of(order_id, SAGA_PARTITIONS), order_id)
        if len(orders) == SAGA_PARTITIONS:
            break
    assert len(orders) == SAGA_PARTITIONS
    for order_id in orders.values():
        assert (await outside.saga_ends(order_id))["status"] == "completed"
    await eventually(
        lambda: [o for o in orders.values() if not outside.mails_about(o)],
        lambda missing: not missing,
        what="every receipt mailed",
    )
    # and the warehouse's arrivals still reach inventory, on each of its partitions
    skus = ("TEA-002", "CUP-001", "TEA-001")
    assert {partition_of(s, topic("warehouse.events").partitions) for s in skus} == set(
        partitions("warehouse.events")
    )
    for sku in skus:
        before = await outside.stock(sku)
        await outside.receive_stock(sku, 7)
        await eventually(
            lambda sku=sku: outside.stock(sku),  # type: ignore[misc]
            lambda s, b=before: s["on_hand"] == b["on_hand"] + 7,  # type: ignore[misc]
            what=f"{sku} arrival applied",
        )


async def test_the_payment_providers_poison_is_dead_lettered_by_every_consumer_on_its_own_dlq(
    outside: Outside,
) -> None:
    """An operator looks for the provider's bad messages on `payments.events.dlq`, the
    catalogue's dead-letter topic for them, with the provider's record as the origin."""
    unknown_key, schema_key = (f"poison-{k}-{uuid.uuid4().hex[:8]}" for k in ("unknown", "schema"))
    unknown = envelope("NoSuchThingHappened", unknown_key, {"order_id": unknown_key})
    await outside.produce_foreign(
        "payments.events", unknown.to_bytes(), key=unknown_key.encode(), headers=unknown.headers()
    )
    bad = envelope("PaymentAuthorized", schema_key, {"order_id": schema_key, "amount_cents": -1})
    await outside.produce_foreign(
        "payments.events", bad.to_bytes(), key=schema_key.encode(), headers=bad.headers()
    )

    def lacking(found: list[Raw]) -> dict[str, set[str]]:
        return {
            key: CONSUMERS["payments.events"] - consumers(outside, letters)
            for key, letters in about(found, [unknown_key, schema_key]).items()
        }

    async def missing() -> dict[str, set[str]]:
        return lacking(await outside.records("payments.events.dlq"))

    await eventually(
        missing,
        lambda m: not any(m.values()),
        timeout=20,  # both consumers read them within a second or two otherwise
        what="a dead letter from every consumer of payments.events",
    )
    found = await outside.records("payments.events.dlq")
    for letters in about(found, [unknown_key, schema_key]).values():
        assert {x.header("dlq.origin.topic") for x in letters} == {outside.topic("payments.events")}
