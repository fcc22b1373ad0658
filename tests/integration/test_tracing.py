"""Tracing across the whole system: every process exports to an OTLP/HTTP receiver this test
runs (tests/support/otlp.py, decoding the protobuf a collector would); customers place orders
over HTTP (one paid, one its provider never answers, so deadlines end it, one from a client
that traces itself), and each order's spans and Kafka records are read back. And with tracing
off, a service exports nothing and hands the context it was given on unchanged."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from schemas.catalogue import TOPICS
from schemas.inventory.v1 import ReserveStock, StockLine
from shared.envelope import Envelope
from tests.conftest import Infra
from tests.support import eventually, unique
from tests.support.otlp import ReceivedSpan, Receiver, otlp_receiver
from tests.support.processes import ServiceProcess, read_records
from tests.support.system import PAY_TIMEOUT, bearer, databases, running_system

pytestmark = pytest.mark.integration

SERVICES = {
    "checkout",
    "inventory",
    "orchestrator",
    "payment-provider-simulator",
    "receipts",
    "projection",
}
# every topic one order's records pass through on the happy path
ORDER_TOPICS = {
    "checkout.events",
    "inventory.commands",
    "inventory.events",
    "payments.requests",
    "payments.events",
    "orchestrator.payments",  # the orchestrator's re-keyed copy of payments.events
    "checkout.commands",
    "receipts.events",
}
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # ms between batches (the default is 5 s)
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # a traced client's span


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as made:
        yield made


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    found = [bytes(v).decode() for k, v in record.headers if k == name and v is not None]
    return found[0] if found else None


def ordered(span: ReceivedSpan, order_id: str) -> bool:
    """The span did something for the order (reading it, a GET, is a request of its own)."""
    return (
        span.attributes.get("leadline.order_id") == order_id
        and span.attributes.get("http.request.method") != "GET"
    )


def trace_of(spans: list[ReceivedSpan], order_id: str) -> list[ReceivedSpan]:
    """The spans of the trace that the order's placement (its POST) started."""
    roots = [
        s
        for s in spans
        if s.attributes.get("leadline.order_id") == order_id and s.kind == "server"
        if s.attributes.get("http.request.method") == "POST"
    ]
    return [s for s in spans if roots and s.trace_id == roots[0].trace_id]


def whole(spans: list[ReceivedSpan]) -> bool:
    """Every service has reported and every parent has arrived (processes export apart)."""
    ids = {s.span_id for s in spans}
    return {s.service for s in spans} >= SERVICES and all(
        s.parent_id in ids for s in spans if s.parent_id
    )


async def order_records(bootstrap: str, prefix: str, order_id: str) -> dict[str, list[str]]:
    """topic (unprefixed) -> the traceparent of each record of the order on it."""
    names = [t.name for t in TOPICS] + ["orchestrator.payments"]
    found = await asyncio.gather(*(read_records(bootstrap, prefix + n) for n in names))
    by_topic: dict[str, list[str]] = {}
    for name, records in zip(names, found, strict=True):
        for r in records:
            if header(r, "correlation_id") == order_id:
                by_topic.setdefault(name, []).append(header(r, "traceparent") or "")
    return by_topic


def chain(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[str]:
    """`service:name` of the span and of each of its ancestors, the root first."""
    names = [f"{span.service}:{span.name}"]
    while span.parent_id:
        span = by_id[span.parent_id]
        names.append(f"{span.service}:{span.name}")
    return names[::-1]


def assert_one_trace(
    received: list[ReceivedSpan], order_id: str, spans: list[ReceivedSpan]
) -> None:
    """Everything done for the order is in one trace, whatever service did it; its root is the
    customer's request, and every other span hangs under one received."""
    trace_id = spans[0].trace_id
    about_order = [s for s in received if ordered(s, order_id)]
    assert {s.trace_id for s in about_order} == {trace_id}
    assert {s.service for s in about_order} >= SERVICES
    roots = [s for s in spans if not s.parent_id]
    assert [(r.service, r.kind, r.name) for r in roots] == [("checkout", "server", "POST /orders")]
    assert roots[0].attributes["http.response.status_code"] == 201
    assert len({s.span_id for s in spans}) == len(spans)
    assert not [s for s in spans if s.error]
    consumed = Counter(s.service for s in spans if s.kind == "consumer")
    assert consumed["projection"] >= 4  # the read side's views, each its own consumer


def assert_records_carry_the_trace(
    records: dict[str, list[str]], spans: list[ReceivedSpan], topics: set[str]
) -> None:
    """Every record of the order, on every topic, names the trace and a span received."""
    trace_id, ids = spans[0].trace_id, {s.span_id for s in spans}
    assert records.keys() >= topics
    for topic, parents in records.items():
        for traceparent in parents:
            version, trace, parent, _ = traceparent.split("-")
            assert (version, trace) == ("00", trace_id), (topic, traceparent)
            assert parent in ids, (topic, traceparent)


async def test_one_trace_follows_each_order_from_its_request_to_its_end(
    infra: Infra,
    catalogue_prefix: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **FAST_EXPORT}
    async with (
        databases(infra.postgres_dsn) as dsns,
        running_system(
            dsns, catalogue_prefix, kafka_bootstrap, tmp_path, with_projection=True, **otel
        ) as system,
    ):
        paid = await system.place("alice", [{"sku": "TEA-001", "quantity": 1}])
        # the provider never answers a `silent` customer: two pay deadlines, then compensation
        unpaid = await system.place("silent-carol", [{"sku": "TEA-001", "quantity": 1}])
        # a caller that traces itself: the order continues the caller's trace
        answer = await system.http.post(
            system.url("checkout", "/orders"),
            json={"lines": [{"sku": "TEA-001", "quantity": 1}]},
            headers={**bearer("dave"), "traceparent": CALLER},
        )
        continued = answer.json()["order_id"]
        saga = await system.ends(paid)
        assert (saga["status"], bool(saga["receipt_number"])) == ("completed", True)
        assert (await system.ends(continued))["status"] == "completed"
        saga = await system.ends(unpaid, timeout=4 * PAY_TIMEOUT + 30)
        assert (saga["status"], saga["reason"]) == ("rejected", "payment timed out")
        traces = {
            order_id: await eventually(
                lambda order_id=order_id: trace_of(receiver.spans(), order_id),
                whole,
                timeout=30,
                what=f"every service's spans of {order_id}, parents included",
            )
            for order_id in (paid, unpaid)
        }
        await eventually(
            lambda: {s.service for s in receiver.spans() if ordered(s, continued)},
            lambda services: services >= SERVICES,
            what="every service's spans of the order placed in the caller's trace",
        )
        records = {
            order_id: await order_records(kafka_bootstrap, catalogue_prefix, order_id)
            for order_id in (paid, unpaid, continued)
        }

    received = receiver.spans()
    for order_id, spans in traces.items():
        assert_one_trace(received, order_id, spans)

    # the caller's trace goes on: the request's span is a child of the caller's span
    _, caller_trace, caller_span, _ = CALLER.split("-")
    [post] = [s for s in received if ordered(s, continued) and s.kind == "server"]
    assert (post.trace_id, post.parent_id, post.name) == (caller_trace, caller_span, "POST /orders")
    assert {s.trace_id for s in received if ordered(s, continued)} == {caller_trace}
    assert {p.split("-")[1] for ps in records[continued].values() for p in ps} == {caller_trace}

    # the paid order's path through Kafka: each step a child of the send before it
    spans = traces[paid]
    by_id = {s.span_id: s for s in spans}
    receipt = next(s for s in spans if s.name == "saga ReceiptIssued")
    assert chain(receipt, by_id) == [
        "checkout:POST /orders",
        "checkout:send OrderPlaced",  # the relay publishing the outbox row
        "orchestrator:saga OrderPlaced",
        "inventory:process ReserveStock",
        "inventory:send StockReserved",
        "orchestrator:saga StockReserved",
        "payment-provider-simulator:process RequestPayment",
        "payment-provider-simulator:send PaymentAuthorized",
        "orchestrator:saga PaymentAuthorized",
        "checkout:process ConfirmOrder",
        "checkout:send OrderConfirmed",
        "receipts:process OrderConfirmed",  # receipts issue on the event, unasked
        "receipts:send ReceiptIssued",
        "orchestrator:saga ReceiptIssued",
    ]
    assert_records_carry_the_trace(records[paid], spans, ORDER_TOPICS)

    # the unpaid order's deadlines, which no message causes, continue its trace from the step
    # that set them; the compensations they lead to hang under the second
    spans = traces[unpaid]
    by_id = {s.span_id: s for s in spans}
    deadlines = [s for s in spans if s.name == "saga SagaDeadlinePassed"]
    last = max(deadlines, key=lambda s: len(chain(s, by_id)))
    assert chain(last, by_id) == [
        "checkout:POST /orders",
        "checkout:send OrderPlaced",
        "orchestrator:saga OrderPlaced",
        "inventory:process ReserveStock",
        "inventory:send StockReserved",
        "orchestrator:saga StockReserved",  # sends RequestPayment, never answered
        "orchestrator:send SagaDeadlinePassed",
        "orchestrator:saga SagaDeadlinePassed",  # asks again
        "orchestrator:send SagaDeadlinePassed",
        "orchestrator:saga SagaDeadlinePassed",  # gives up
    ]
    compensations = {f"{s.service}:{s.name}" for s in spans if s.parent_id == last.span_id}
    assert {
        "inventory:process ReleaseStock",
        "payment-provider-simulator:process VoidPayment",
        "checkout:process RejectOrder",
    } <= compensations
    assert_records_carry_the_trace(
        records[unpaid], spans, {"orchestrator.deadlines", "payments.requests"}
    )


async def test_untraced_nothing_is_exported_and_a_callers_context_is_handed_on(
    pg_dsn: str,
    catalogue_prefix: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    inventory = ServiceProcess(
        "inventory",
        {
            "INVENTORY_DATABASE_URL": pg_dsn,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
            "INVENTORY_CONSUMER_GROUP": unique("inventory"),
            # `none` wins over an endpoint: tracing stays off
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            **FAST_EXPORT,
        },
        tmp_path / "inventory.log",
    )
    traced, foreign = unique("order"), unique("order")
    commands = {
        o: Envelope.wrap(
            ReserveStock(order_id=o, lines=[StockLine(sku="TEA-001", quantity=1)]),
            key=o,
            producer="test",
        )
        for o in (traced, foreign)
    }
    inventory.start()
    try:
        await inventory.ready()
        await produce_raw(
            kafka_bootstrap,
            catalogue_prefix + "inventory.commands",
            [
                (commands[traced], [("traceparent", CALLER.encode())]),
                (commands[foreign], []),  # as a producer that does not trace sends it
            ],
        )

        async def replies() -> dict[str, str | None]:
            records = await read_records(kafka_bootstrap, catalogue_prefix + "inventory.events")
            return {
                header(r, "correlation_id") or "": header(r, "traceparent")
                for r in records
                if header(r, "type") == "StockReserved"
            }

        answered = await eventually(
            replies, lambda found: {traced, foreign} <= found.keys(), what="both reserved"
        )
    finally:
        inventory.stop()
    # nothing recorded: the caller's context goes on as it came, and none is made up
    assert answered == {traced: CALLER, foreign: None}
    assert receiver.requests == 0


async def produce_raw(
    bootstrap: str, topic: str, records: list[tuple[Envelope, list[tuple[str, bytes]]]]
) -> None:
    """Each envelope with its own headers and `extra` ones."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for envelope, extra in records:
            await producer.send_and_wait(
                topic,
                envelope.to_bytes(),
                key=envelope.key.encode(),
                headers=[*envelope.headers(), *extra],
            )
    finally:
        await producer.stop()
