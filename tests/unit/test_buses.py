"""CommandBus / QueryBus / EventBus semantics (DESIGN §6, STYLE 2)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import structlog

from shared.buses import (
    Command,
    CommandBus,
    EventBus,
    HandlerAlreadyRegisteredError,
    HandlerFailure,
    NoHandlerError,
    Query,
    QueryBus,
)
from shared.observability.logging import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@dataclass(frozen=True)
class PlaceOrder(Command[str]):
    order_id: str


@dataclass(frozen=True)
class PlaceRushOrder(PlaceOrder):
    pass


@dataclass(frozen=True)
class GetOrder(Query[dict[str, str]]):
    order_id: str


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


async def test_command_returns_its_handlers_result() -> None:
    bus = CommandBus()
    seen: list[PlaceOrder] = []

    async def place(cmd: PlaceOrder) -> str:
        seen.append(cmd)
        return f"placed {cmd.order_id}"

    bus.register(PlaceOrder, place)
    assert await bus.execute(PlaceOrder("o-1")) == "placed o-1"
    assert seen == [PlaceOrder("o-1")]
    assert bus.handles(PlaceOrder)


async def test_second_command_handler_is_refused() -> None:
    bus = CommandBus()

    async def first(cmd: PlaceOrder) -> str:
        return "first"

    async def second(cmd: PlaceOrder) -> str:
        return "second"

    bus.register(PlaceOrder, first)
    with pytest.raises(HandlerAlreadyRegisteredError, match="PlaceOrder already handled by"):
        bus.register(PlaceOrder, second)
    assert await bus.execute(PlaceOrder("o-1")) == "first"


async def test_command_without_handler_raises_naming_the_type() -> None:
    with pytest.raises(NoHandlerError, match="no handler registered for command PlaceOrder"):
        await CommandBus().execute(PlaceOrder("o-1"))


async def test_dispatch_is_by_exact_type_not_by_parent_class() -> None:
    bus = CommandBus()

    async def place(cmd: PlaceOrder) -> str:
        return "placed"

    bus.register(PlaceOrder, place)
    with pytest.raises(NoHandlerError, match="PlaceRushOrder"):
        await bus.execute(PlaceRushOrder("o-1"))


async def test_command_handler_exception_propagates_unchanged() -> None:
    bus = CommandBus()
    boom = ValueError("out of stock")

    async def place(cmd: PlaceOrder) -> str:
        raise boom

    bus.register(PlaceOrder, place)
    with pytest.raises(ValueError, match="out of stock") as caught:
        await bus.execute(PlaceOrder("o-1"))
    assert caught.value is boom


async def test_query_bus_answers_refuses_duplicates_and_reports_missing() -> None:
    bus = QueryBus()

    async def get_order(query: GetOrder) -> dict[str, str]:
        return {"id": query.order_id}

    with pytest.raises(NoHandlerError, match="no handler registered for query GetOrder"):
        await bus.execute(GetOrder("o-1"))
    bus.register(GetOrder, get_order)
    assert await bus.execute(GetOrder("o-1")) == {"id": "o-1"}
    with pytest.raises(HandlerAlreadyRegisteredError):
        bus.register(GetOrder, get_order)


async def test_event_runs_every_handler_in_registration_order() -> None:
    bus = EventBus()
    calls: list[str] = []

    async def first(event: OrderPlaced) -> None:
        calls.append(f"first {event.order_id}")

    async def second(event: OrderPlaced) -> None:
        calls.append(f"second {event.order_id}")

    bus.register(OrderPlaced, first)
    bus.register(OrderPlaced, second)
    assert await bus.publish(OrderPlaced("o-1")) == []
    assert calls == ["first o-1", "second o-1"]


async def test_event_without_handlers_is_not_an_error() -> None:
    assert await EventBus().publish(OrderPlaced("o-1")) == []


async def test_failing_event_handler_is_isolated_and_reported() -> None:
    reported: list[HandlerFailure] = []
    bus = EventBus(on_error=reported.append)
    calls: list[str] = []
    boom = RuntimeError("projection down")

    async def failing(event: OrderPlaced) -> None:
        raise boom

    async def after(event: OrderPlaced) -> None:
        calls.append("after")

    bus.register(OrderPlaced, failing)
    bus.register(OrderPlaced, after)
    failures = await bus.publish(OrderPlaced("o-1"))

    assert calls == ["after"]
    assert reported == failures
    assert len(failures) == 1
    assert failures[0].error is boom
    assert failures[0].event == OrderPlaced("o-1")
    assert failures[0].handler.endswith("failing")


async def test_async_error_hook_is_awaited_and_a_broken_hook_does_not_stop_publish() -> None:
    reported: list[str] = []

    async def hook(failure: HandlerFailure) -> None:
        reported.append(failure.handler)
        raise RuntimeError("hook broken")

    bus = EventBus(on_error=hook)
    calls: list[str] = []

    async def failing(event: OrderPlaced) -> None:
        raise RuntimeError("handler broken")

    async def after(event: OrderPlaced) -> None:
        calls.append("after")

    bus.register(OrderPlaced, failing)
    bus.register(OrderPlaced, after)
    failures = await bus.publish(OrderPlaced("o-1"))
    assert [f.handler for f in failures] == reported
    assert calls == ["after"]


async def test_cancellation_is_not_swallowed_as_a_handler_failure() -> None:
    reported: list[HandlerFailure] = []
    bus = EventBus(on_error=reported.append)
    calls: list[str] = []

    async def cancelled(event: OrderPlaced) -> None:
        raise asyncio.CancelledError

    async def after(event: OrderPlaced) -> None:
        calls.append("after")

    bus.register(OrderPlaced, cancelled)
    bus.register(OrderPlaced, after)
    with pytest.raises(asyncio.CancelledError):
        await bus.publish(OrderPlaced("o-1"))
    assert reported == []
    assert calls == []


async def test_default_error_hook_logs_the_failure_with_its_traceback(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("test-buses")
    bus = EventBus()

    async def failing(event: OrderPlaced) -> None:
        raise RuntimeError("projection down")

    bus.register(OrderPlaced, failing)
    await bus.publish(OrderPlaced("o-1"))

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [line] = [line for line in lines if line["event"] == "event handler failed"]
    assert line["level"] == "error"
    assert line["event_type"] == "OrderPlaced"
    assert line["handler"].endswith("failing")
    assert "RuntimeError: projection down" in line["exception"]
