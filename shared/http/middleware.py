"""ASGI middleware every service installs: a request body size limit, and request metrics per
route template; and how FastAPI's own tracing runs (`HTTP_TRACING`)."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import orjson
from fastapi.telemetry import TelemetryConfig
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "leadline_http_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "leadline_http_request_seconds",
    "Time to answer an HTTP request, by route template.",
    ["service", "method", "route"],
)


_UNTRACED = ("/health/", "/metrics", "/docs", "/redoc", "/openapi.json", "/asyncapi")


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    path = scope.get("path", "")
    return isinstance(path, str) and path.startswith(_UNTRACED)


# FastAPI traces requests itself once a tracer provider is installed (observability/tracing.py):
# a SERVER span per request continuing an incoming `traceparent`, named by method and route
# template, with the status code. One span per request (no spans per dependency or for
# serialisation); probes, scrapes and docs untraced; metrics and logs stay with Prometheus and
# structlog; and no exporter of FastAPI's own beside ours.
HTTP_TRACING: TelemetryConfig = {
    "tracing": True,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
    "exclude": _untraced,
}


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """413 for a body over `max_bytes`, declared or streamed, before the app parses any of it.
    The body is buffered (it is small by definition) and replayed to the app."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.max_bytes:
                await _refuse(send, 413, f"request body exceeds {self.max_bytes} bytes")
                return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await _refuse(send, 413, f"request body exceeds {self.max_bytes} bytes")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


class RequestMetrics:
    """Counts and times every answer, the 413s and 400s above included when it is outermost."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            # the route template, not the path: order ids must not become label values
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            HTTP_SECONDS.labels(self.service, method, route).observe(time.perf_counter() - started)
