"""In-process command, query and event buses (DESIGN §6, STYLE 2), awaitable and typed.

Registration is explicit, in one place per service (its bootstrap). Dispatch is by the message's
exact class, as in cosmicpython's message bus: a subclass does not reach its parent's handlers,
so what runs is always what the registration table says.

- `CommandBus` / `QueryBus`: exactly one handler per type; errors propagate to the caller.
- `EventBus`: any number of handlers per type, run one after another in registration order
  (they may share one transaction's connection, which must not be used concurrently); each is
  isolated, so a failing handler is reported to `on_error` and the others still run.

Subclass `Command[R]` / `Query[R]` (optional) to have `execute` return the handler's type `R`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from shared.observability.logging import get_logger

M = TypeVar("M")
R = TypeVar("R")

Handler = Callable[[M], Awaitable[R]]
_AnyHandler = Callable[[Any], Awaitable[Any]]


class Command(Generic[R]):
    """Optional marker: a command whose handler returns `R`."""

    __slots__ = ()


class Query(Generic[R]):
    """Optional marker: a query whose handler returns `R`."""

    __slots__ = ()


class HandlerAlreadyRegisteredError(ValueError):
    """A command or query type got a second handler; exactly one may answer it."""


class NoHandlerError(LookupError):
    """A command or query was sent that no handler is registered for."""


class _SingleHandlerBus:
    _kind = "message"

    def __init__(self) -> None:
        self._handlers: dict[type, _AnyHandler] = {}

    def register(self, message_type: type[M], handler: Handler[M, Any]) -> None:
        """Make `handler` the one handler of `message_type`; a second registration raises."""
        if message_type in self._handlers:
            existing = _name(self._handlers[message_type])
            raise HandlerAlreadyRegisteredError(
                f"{self._kind} {message_type.__qualname__} already handled by {existing}"
            )
        self._handlers[message_type] = handler

    def handles(self, message_type: type) -> bool:
        return message_type in self._handlers

    async def _dispatch(self, message: object) -> Any:
        handler = self._handlers.get(type(message))
        if handler is None:
            raise NoHandlerError(
                f"no handler registered for {self._kind} {type(message).__qualname__}"
            )
        return await handler(message)


class CommandBus(_SingleHandlerBus):
    _kind = "command"

    @overload
    async def execute(self, command: Command[R]) -> R: ...
    @overload
    async def execute(self, command: object) -> Any: ...
    async def execute(self, command: object) -> Any:
        """Run the command's handler and return its result. Raises `NoHandlerError` when none
        is registered; the handler's own exceptions propagate unchanged."""
        return await self._dispatch(command)


class QueryBus(_SingleHandlerBus):
    _kind = "query"

    @overload
    async def execute(self, query: Query[R]) -> R: ...
    @overload
    async def execute(self, query: object) -> Any: ...
    async def execute(self, query: object) -> Any:
        """Run the query's handler and return its answer; errors propagate as for commands."""
        return await self._dispatch(query)


@dataclass(frozen=True)
class HandlerFailure:
    event: object
    handler: str
    error: Exception


ErrorHook = Callable[[HandlerFailure], Awaitable[None] | None]

_log = get_logger(__name__)


def log_failure(failure: HandlerFailure) -> None:
    """The default `on_error`: one error line with the traceback, naming event and handler."""
    _log.error(
        "event handler failed",
        event_type=type(failure.event).__qualname__,
        handler=failure.handler,
        exc_info=failure.error,
    )


class EventBus:
    def __init__(self, on_error: ErrorHook = log_failure) -> None:
        self._handlers: dict[type, list[_AnyHandler]] = {}
        self._on_error = on_error

    def register(self, event_type: type[M], handler: Handler[M, object]) -> None:
        """Add a handler for `event_type`; handlers run in the order they were registered."""
        self._handlers.setdefault(event_type, []).append(handler)

    def handlers_for(self, event_type: type) -> tuple[Callable[..., Awaitable[Any]], ...]:
        return tuple(self._handlers.get(event_type, ()))

    async def publish(self, event: object) -> list[HandlerFailure]:
        """Run every handler of the event's type. Returns the failures (also sent to
        `on_error`); an event nobody handles is not an error. Cancellation is not a failure:
        it propagates at once."""
        failures: list[HandlerFailure] = []
        for handler in self._handlers.get(type(event), ()):
            try:
                await handler(event)
            except Exception as exc:
                failure = HandlerFailure(event=event, handler=_name(handler), error=exc)
                failures.append(failure)
                await self._report(failure)
        return failures

    async def _report(self, failure: HandlerFailure) -> None:
        # A broken hook must not turn one handler's failure into a failure of the publish.
        try:
            result = self._on_error(failure)
            if inspect.isawaitable(result):
                await result
        except Exception:
            _log.exception("event error hook failed", handler=failure.handler)


def _name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)
