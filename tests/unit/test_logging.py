"""JSON logs with the message's ids bound only inside `message_context` (DESIGN §9)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from opentelemetry import trace

from shared.envelope import Envelope
from shared.observability.logging import (
    bind_correlation,
    configure_logging,
    get_logger,
    message_context,
)
from shared.observability.tracing import context_from


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def envelope(correlation_id: str, caused_by: Envelope | None = None) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        type="OrderPlaced",
        version=2,
        occurred_at=datetime.now(UTC),
        producer="checkout",
        key=correlation_id,
        correlation_id=correlation_id,
        causation_id=caused_by.event_id if caused_by else None,
        payload={},
    )


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_lines_are_json_with_service_level_and_utc_iso_timestamp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("checkout")
    get_logger("t").info("order placed", order_id="o-1")
    [line] = lines(capsys)
    assert line["event"] == "order placed"
    assert line["order_id"] == "o-1"
    assert line["service"] == "checkout"
    assert line["level"] == "info"
    assert line["logger"] == "t"
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() == timedelta(0)


def test_ids_are_bound_inside_message_context_and_gone_after(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("checkout")
    log = get_logger("t")
    parent = envelope("order-1")
    env = envelope("order-1", caused_by=parent)
    log.info("before")
    with message_context(env):
        log.info("inside")
    log.info("after")
    before, inside, after = lines(capsys)
    assert inside["event_id"] == str(env.event_id)
    assert inside["correlation_id"] == "order-1"
    assert inside["causation_id"] == str(parent.event_id)
    assert inside["type"] == "OrderPlaced"
    for outside in (before, after):
        assert not {"event_id", "correlation_id", "causation_id", "type"} & outside.keys()


def test_stdlib_loggers_share_the_json_stream_and_the_bound_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("checkout")
    env = envelope("order-2")
    with message_context(env):
        logging.getLogger("aiokafka.consumer").warning("rebalance %s", "started")
    [line] = lines(capsys)
    assert line["event"] == "rebalance started"
    assert line["logger"] == "aiokafka.consumer"
    assert line["level"] == "warning"
    assert line["event_id"] == str(env.event_id)
    assert line["service"] == "checkout"


def test_nested_context_restores_the_outer_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("checkout")
    log = get_logger("t")
    outer, inner = envelope("order-3"), envelope("order-4")
    with message_context(outer):
        with message_context(inner):
            log.info("inner")
        log.info("outer again")
    inner_line, outer_line = lines(capsys)
    assert inner_line["event_id"] == str(inner.event_id)
    assert outer_line["event_id"] == str(outer.event_id)
    assert outer_line["correlation_id"] == "order-3"
    assert outer_line["causation_id"] is None


async def test_context_survives_awaits_and_does_not_leak_between_tasks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("checkout")
    log = get_logger("t")
    first_bound, second_done = asyncio.Event(), asyncio.Event()
    a, b = envelope("order-a"), envelope("order-b")

    async def handle_a() -> None:
        with message_context(a):
            first_bound.set()
            await second_done.wait()  # b binds and logs while a is suspended here
            log.info("a")

    async def handle_b() -> None:
        await first_bound.wait()
        with message_context(b):
            log.info("b")
        second_done.set()

    await asyncio.gather(handle_a(), handle_b())
    by_event = {line["event"]: line for line in lines(capsys)}
    assert by_event["a"]["event_id"] == str(a.event_id)
    assert by_event["b"]["event_id"] == str(b.event_id)


def test_configuring_twice_replaces_rather_than_duplicates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("first", level="INFO")
    log = get_logger("t")  # created before the second call, like a module-level logger
    configure_logging("second", level="WARNING")
    log.info("filtered out")
    log.warning("kept")
    logging.getLogger("uvicorn.error").info("filtered out too")
    [line] = lines(capsys)
    assert line["event"] == "kept"
    assert line["service"] == "second"


def test_exceptions_are_rendered_into_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("checkout")
    try:
        raise RuntimeError("db down")
    except RuntimeError:
        get_logger("t").exception("handler failed")
    [line] = lines(capsys)
    assert line["level"] == "error"
    assert "RuntimeError: db down" in line["exception"]


def test_bind_correlation_for_http_requests(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("checkout")
    log = get_logger("t")
    with bind_correlation("req-7"):
        log.info("request")
    log.info("after")
    request, after = lines(capsys)
    assert request["correlation_id"] == "req-7"
    assert "correlation_id" not in after


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("checkout", level="LOUD")


def test_a_line_written_inside_a_span_names_its_trace(capsys: pytest.CaptureFixture[str]) -> None:
    # untraced, the span is the caller's, handed on: lines still lead to the caller's trace
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    configure_logging("checkout")
    with trace.use_span(trace.get_current_span(context_from({"traceparent": parent}))):
        get_logger("t").info("inside")
    get_logger("t").info("outside")
    inside, outside = lines(capsys)
    assert (inside["trace_id"], inside["span_id"]) == (parent[3:35], parent[36:52])
    assert not {"trace_id", "span_id"} & outside.keys()
