"""Tracing without a collector: when it is on, W3C context to and from Kafka headers, and what a
process that does not trace does with a context that arrives (hands it on, records nothing).

No test here installs a tracer provider: OpenTelemetry allows one per process, and every other
test in it must keep running untraced. Recording is proven across real processes in
tests/integration/test_tracing.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from opentelemetry import trace
from pydantic import ValidationError

from schemas.checkout.v1 import OrderConfirmed
from shared.envelope import Envelope, Headers
from shared.kafka.dead_letters import Reason, dead_letter_message
from shared.kafka.decoding import Subscription, Work, route, routes
from shared.kafka.tracing import DeferredSends, processing
from shared.observability.tracing import (
    TracingSettings,
    carrier_of,
    configure_tracing,
    context_from,
    current_carrier,
    recording,
    with_carrier,
    with_current_context,
)

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class FakeRecord:
    headers: Headers
    value: bytes
    topic: str = "checkout.events"
    partition: int = 0
    offset: int = 7
    key: bytes = field(default=b"ord-1")


def confirmed() -> Envelope:
    return Envelope.wrap(OrderConfirmed(order_id="ord-1"), key="ord-1", producer="test")


@pytest.mark.parametrize(
    ("environment", "exporter"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),  # the SDK's default endpoint, localhost
        ({"OTEL_TRACES_EXPORTER": " OTLP "}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
    ],
)
def test_tracing_is_off_unless_the_environment_names_an_exporter(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], exporter: str | None
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert TracingSettings().exporter == exporter


@pytest.mark.parametrize(
    ("name", "value", "refused"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger", "OTEL_TRACES_EXPORTER"),
        ("OTEL_TRACES_EXPORTER", "console", "OTEL_TRACES_EXPORTER"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "PROTOCOL"),  # named by its traces variant
    ],
)
def test_an_exporter_or_protocol_this_build_lacks_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, refused: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=refused):
        TracingSettings()


def test_configured_off_installs_nothing() -> None:
    assert configure_tracing("checkout", TracingSettings()) is False
    assert not recording()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_only_the_w3c_fields_are_read_from_record_headers() -> None:
    headers: Headers = [
        ("type", b"OrderConfirmed"),
        ("traceparent", PARENT.encode()),
        ("tracestate", b"vendor=1"),
        ("x-vendor-id", b"\xff\x00"),
        ("baggage", b"user=1"),
    ]
    assert carrier_of(headers) == {"traceparent": PARENT, "tracestate": "vendor=1"}
    assert carrier_of([("traceparent", None)]) == {}  # type: ignore[list-item]  # Kafka allows it


def test_with_carrier_replaces_the_context_and_keeps_every_other_header() -> None:
    headers: Headers = [("traceparent", b"old"), ("type", b"T"), ("tracestate", b"old=1")]
    assert with_carrier(headers, {"traceparent": PARENT}) == [
        ("type", b"T"),
        ("traceparent", PARENT.encode()),
    ]
    assert with_carrier(headers, {}) == [("type", b"T")]


@pytest.mark.parametrize(
    "carrier",
    [{}, {"traceparent": "garbage"}, {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"}],
)
def test_a_record_without_a_valid_context_starts_a_new_trace(carrier: dict[str, str]) -> None:
    span = trace.get_current_span(context_from(carrier))
    assert not span.get_span_context().is_valid


def test_a_context_survives_the_round_trip_through_headers() -> None:
    context = context_from({"traceparent": PARENT, "tracestate": "vendor=1"})
    assert current_carrier(context) == {"traceparent": PARENT, "tracestate": "vendor=1"}


def test_untraced_a_handler_runs_in_the_context_its_record_carries_and_hands_it_on() -> None:
    envelope = confirmed()
    record = FakeRecord([*envelope.headers(), ("traceparent", PARENT.encode())], b"")
    assert current_carrier() == {}
    with processing(record, envelope, consumer="c"):
        # what the handler appends to its outbox (or sends) carries the caller's trace
        assert carrier_of(with_current_context(envelope.headers())) == {"traceparent": PARENT}
    assert current_carrier() == {}


def test_untraced_a_foreign_record_without_context_gives_its_handler_none() -> None:
    envelope = confirmed()
    ambient = trace.get_current_span(context_from({"traceparent": PARENT}))
    with (
        trace.use_span(ambient),  # not even one current around the consumer loop
        processing(FakeRecord(envelope.headers(), b""), envelope, consumer="c"),
    ):
        assert with_current_context(envelope.headers()) == envelope.headers()


def test_untraced_deferred_sends_publish_the_stored_context_as_it_is() -> None:
    stored = with_carrier(confirmed().headers(), {"traceparent": PARENT})
    sends = DeferredSends()
    assert sends.start("checkout.events", "ord-1", stored) == stored
    sends.end(0, RuntimeError("broker away"))  # nothing recorded, nothing to fail


def test_records_with_trace_context_and_unknown_headers_route_like_any_other() -> None:
    # the routing an old consumer does: it reads `type` and the body, nothing else
    envelope = confirmed()
    extra: Headers = [
        ("traceparent", PARENT.encode()),
        ("tracestate", b"vendor=1"),
        ("x-vendor-id", b"\xff\x00"),
    ]
    record = FakeRecord([*envelope.headers(), *extra], envelope.to_bytes())

    async def handler(_: Envelope, __: object, ___: object) -> None: ...

    table = routes([Subscription("checkout.events", OrderConfirmed, handler)])
    outcome = route(record, table)
    assert isinstance(outcome, Work)
    assert outcome.envelope == envelope


def test_a_dead_letter_keeps_the_trace_context_of_its_record() -> None:
    # re-driven, it continues the trace it was parked in
    envelope = confirmed()
    carried = [("traceparent", PARENT.encode()), ("tracestate", b"vendor=1")]
    record = FakeRecord([*envelope.headers(), *carried], envelope.to_bytes())
    letter = dead_letter_message(record, reason=Reason.REJECTED, error="refused", consumer="c")
    assert carrier_of(letter.headers) == {"traceparent": PARENT, "tracestate": "vendor=1"}
