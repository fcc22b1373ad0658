"""Tracing with OpenTelemetry: off unless configured; W3C trace context travels with every message.

Configured by OpenTelemetry's own environment variables, read once per process by
`configure_tracing` (`TracingSettings`). Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, or `OTEL_TRACES_EXPORTER=otlp` (the SDK's default
endpoint then, http://localhost:4318); `OTEL_TRACES_EXPORTER=none` and `OTEL_SDK_DISABLED=true`
keep it off. Spans go out in batches over OTLP/HTTP (protobuf); the exporter, the sampler and
the batch processor read the rest of their standard variables themselves
(`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_SCHEDULE_DELAY`,
`OTEL_RESOURCE_ATTRIBUTES`…). `service.name` is the service's `service_name` setting.

Off, nothing is installed: the API's no-op tracer records nothing and exports nothing, and a
context that arrived with a message is handed on unchanged, so a process that does not trace
still carries its callers' traces.

The context travels as W3C `traceparent`/`tracestate`: in HTTP headers, in Kafka record headers,
and in the headers an outbox row stores beside its message, so a row the relay publishes late,
or after a crash, still continues the trace that wrote it. Kafka records carry exactly these two
fields, whatever `OTEL_PROPAGATORS` says for HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.envelope import Headers
from shared.settings import EnvironmentSettings

Carrier = dict[str, str]
"""The W3C fields of one context: `traceparent` and, when there is one, `tracestate`."""

W3C_FIELDS = ("traceparent", "tracestate")
ORDER_ID = "leadline.order_id"  # on every span about one order: HTTP, handlers, saga, sends

_W3C = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("leadline")  # a proxy: it records once a provider is installed


class TracingSettings(EnvironmentSettings):
    """The standard variables that decide whether this process traces, and how it exports."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    sdk_disabled: bool = Field(default=False, validation_alias=AliasChoices("OTEL_SDK_DISABLED"))
    # no console exporter: its multi-line output would break the JSON log stream on stdout
    traces_exporter: Literal["otlp", "none"] | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_TRACES_EXPORTER")
    )
    otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    # only the HTTP exporter is installed: a collector expecting gRPC would get nothing
    otlp_protocol: Literal["http/protobuf"] = Field(
        default="http/protobuf",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
        ),
    )

    @field_validator("traces_exporter", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() or None if isinstance(value, str) else value

    @property
    def exporter(self) -> Literal["otlp"] | None:
        """What spans are exported to; None: tracing is off."""
        if self.sdk_disabled or self.traces_exporter == "none":
            return None
        if self.traces_exporter == "otlp" or self.otlp_endpoint or self.otlp_traces_endpoint:
            return "otlp"
        return None


def configure_tracing(service_name: str, settings: TracingSettings | None = None) -> bool:
    """Install this process's tracer provider when `settings` (by default the environment)
    ask for an exporter; returns whether it traces. Once per process: OpenTelemetry refuses a
    second provider. Spans still buffered are exported at exit, and by `flush_traces`."""
    settings = settings if settings is not None else TracingSettings()
    if settings.exporter is None:
        return False
    # imported here: a process that does not trace never loads the SDK
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    # endpoint, headers, timeout, compression: the exporter reads them from the environment
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def flush_traces(timeout: float = 5.0) -> None:
    """Export the spans still buffered (blocking, at most `timeout` seconds); nothing when
    tracing is off. Called when a service stops, before a process manager may kill it."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if callable(force_flush):
        force_flush(int(timeout * 1000))


def recording() -> bool:
    """Whether this process records spans (a provider is installed)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracer() -> Tracer:
    return _TRACER


def current_carrier(context: Context | None = None) -> Carrier:
    """The W3C fields of `context` (the current one by default); empty without a valid span."""
    carrier: Carrier = {}
    if trace.get_current_span(context).get_span_context().is_valid:  # most rows when off
        _W3C.inject(carrier, context=context)
    return carrier


def context_from(carrier: Mapping[str, str]) -> Context:
    """The context `carrier` names, or an empty one (a new trace starts under it) when it
    names none or a malformed one."""
    return _W3C.extract(carrier)


def carrier_of(headers: Headers) -> Carrier:
    """The W3C fields among Kafka record headers (other headers and empty values ignored)."""
    return {
        name: bytes(value).decode(errors="replace")
        for name, value in headers
        if name in W3C_FIELDS and value is not None
    }


def with_carrier(headers: Headers, carrier: Mapping[str, str]) -> Headers:
    """`headers` with their W3C fields replaced by `carrier`'s."""
    kept = [(name, value) for name, value in headers if name not in W3C_FIELDS]
    return kept + [(name, carrier[name].encode()) for name in W3C_FIELDS if name in carrier]


def with_current_context(headers: Headers) -> Headers:
    """`headers` carrying the current context (a message sent now, from inside a span)."""
    return with_carrier(headers, current_carrier())


def tag(**attributes: AttributeValue) -> None:
    """Set attributes on the current span (nothing when it does not record)."""
    trace.get_current_span().set_attributes(attributes)


def tag_order(order_id: str) -> None:
    tag(**{ORDER_ID: order_id})
