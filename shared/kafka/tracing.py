"""Spans around Kafka records (OpenTelemetry messaging conventions), kept off the hot path when
tracing is off.

- `processing`: a CONSUMER span per record a handler (or the saga) applies, child of the context
  the record's headers carry; a record without one (a foreign producer's), or with a malformed
  one, starts a new trace. What the handler appends to its outbox, or sends, is its child.
- `DeferredSends`: a PRODUCER span per record published after the fact (outbox rows, queued
  answers, deadline announcements), child of the context stored with the record, and the
  record's `traceparent` replaced by the span's, so the receiver hangs under the send and the
  time the record waited shows as the gap before it. A record stored without a context is sent
  as it is, without a span: publishing does not start traces.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue

from shared.envelope import Envelope, Headers
from shared.observability.tracing import (
    ORDER_ID,
    carrier_of,
    context_from,
    current_carrier,
    recording,
    tracer,
    with_carrier,
)

SYSTEM = {"messaging.system": "kafka"}


def _header(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == name and value is not None:
            return bytes(value).decode(errors="replace")
    return None


def record_attributes(record: Any, envelope: Envelope) -> dict[str, AttributeValue]:
    """Where `record` came from and what it is (an aiokafka ConsumerRecord or alike)."""
    return {
        **SYSTEM,
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "messaging.kafka.message.key": envelope.key,
        "messaging.message.id": str(envelope.event_id),
        "messaging.message.conversation_id": envelope.correlation_id,
        "leadline.message.type": envelope.type,
        ORDER_ID: envelope.correlation_id,  # the correlation id is the order id, end to end
    }


@contextmanager
def processing(
    record: Any, envelope: Envelope, *, consumer: str, name: str | None = None
) -> Iterator[Span]:
    """The current span while `record` is handled; an exception leaving it marks it failed."""
    carrier = carrier_of(record.headers)
    if not recording():
        # nothing to record: only the caller's context (or none) is made current, to hand on
        token = attach(context_from(carrier) if carrier else Context())
        try:
            yield trace.get_current_span()
        finally:
            detach(token)
        return
    attributes = {
        **record_attributes(record, envelope),
        "messaging.operation.type": "process",
        "messaging.consumer.group.name": consumer,
    }
    with tracer().start_as_current_span(
        name or f"process {envelope.type}",
        context=context_from(carrier),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


@contextmanager
def dead_lettering(record: Any, *, consumer: str, reason: str, error: str) -> Iterator[None]:
    """A span for parking `record` on its dead-letter topic, in the trace the record carried,
    so a poisoned order's trace ends where it stopped."""
    if not recording():
        yield
        return
    attributes: dict[str, AttributeValue] = {
        **SYSTEM,
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "messaging.consumer.group.name": consumer,
        "leadline.dead_letter.reason": reason,
    }
    if (correlation := _header(record.headers, "correlation_id")) is not None:
        attributes[ORDER_ID] = correlation
    with tracer().start_as_current_span(
        f"dead-letter {record.topic}",
        context=context_from(carrier_of(record.headers)),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        span.set_status(Status(StatusCode.ERROR, error[:500]))
        yield


class DeferredSends:
    """PRODUCER spans for one batch of sends, in the batch's order: `start` each record,
    then `end` the batch once the first `delivered` were acknowledged."""

    def __init__(self) -> None:
        self._spans: list[Span | None] = []

    def start(self, topic: str, key: str, headers: Headers) -> Headers:
        """The headers to send: the stored context replaced by the new span's."""
        if not recording():
            self._spans.append(None)  # nothing to record: the stored context goes out as is
            return headers
        stored = carrier_of(headers)
        if "traceparent" not in stored:
            self._spans.append(None)
            return headers
        type_ = _header(headers, "type") or "record"
        attributes: dict[str, AttributeValue] = {
            **SYSTEM,
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": key,
            "leadline.message.type": type_,
        }
        if (event_id := _header(headers, "event_id")) is not None:
            attributes["messaging.message.id"] = event_id
        if (correlation := _header(headers, "correlation_id")) is not None:
            attributes["messaging.message.conversation_id"] = correlation
            attributes[ORDER_ID] = correlation
        span = tracer().start_span(
            f"send {type_}",
            context=context_from(stored),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        self._spans.append(span)
        return with_carrier(headers, current_carrier(set_span_in_context(span)))

    def end(self, delivered: int, error: BaseException | str | None = None) -> None:
        """End every span: the first `delivered` acknowledged, the rest failed with `error`."""
        self.end_each([n < delivered for n in range(len(self._spans))], error)

    def end_each(self, acknowledged: Sequence[bool], error: BaseException | str | None) -> None:
        """End every span, the n-th acknowledged when `acknowledged[n]` (missing: not)."""
        failure = Status(StatusCode.ERROR, str(error) if error else "not acknowledged")
        for n, span in enumerate(self._spans):
            if span is None:
                continue
            if not (n < len(acknowledged) and acknowledged[n]):
                span.set_status(failure)
            span.end()
        self._spans.clear()
