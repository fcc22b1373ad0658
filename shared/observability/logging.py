"""Structured JSON logs, one line per record on stdout (DESIGN §9).

structlog and the standard library (uvicorn, aiokafka, asyncpg, faust) go through the same
processors and the same JSON renderer, so every line has `timestamp` (ISO 8601, UTC), `level`,
`logger`, `service`, `event`, and whatever ids `message_context`/`bind_correlation` bound; a
line written inside a span carries its `trace_id` and `span_id`.

Run uvicorn with `log_config=None`: otherwise it installs its own handlers at start-up and its
lines leave the JSON stream.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from shared.envelope import Envelope

# Libraries that install their own handlers; they must propagate to our root handler instead.
_ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka", "asyncpg", "faust")


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we own, so a second `configure_logging` replaces it, never stacks."""


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


def _service_adder(service: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def _add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # a line written inside a span names it: from a log line to its trace, and back
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send structlog and stdlib logging to stdout as JSON lines. Safe to call again: the
    previous configuration (handler, level, service name) is replaced, not duplicated."""
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _service_adder(service),
        _add_trace_ids,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # filters below the level before any processor runs: debug calls cost next to nothing
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # not cached, so a reconfiguration also reaches loggers created at import time
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
    )
    handler = _JsonHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A structlog logger: `log.info("order placed", order_id=...)`."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


@contextmanager
def message_context(envelope: Envelope) -> Iterator[None]:
    """Bind the message's ids to every log line (structlog and stdlib) written inside the block,
    across awaits of the same task; the previous values come back on exit, so nested handling
    of a caused message restores its parent's ids."""
    with structlog.contextvars.bound_contextvars(
        event_id=str(envelope.event_id),
        correlation_id=envelope.correlation_id,
        causation_id=str(envelope.causation_id) if envelope.causation_id else None,
        type=envelope.type,
    ):
        yield


@contextmanager
def bind_correlation(correlation_id: str) -> Iterator[None]:
    """Bind a correlation id (an HTTP request's, or the order id) for the block's duration."""
    with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
        yield
