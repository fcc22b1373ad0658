"""The simulator's one settings class, read from the environment only (STYLE 9). The knobs
here are start values: `PUT /knobs` changes them while the simulator runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings
from simulators.payment_provider.domain import Knobs, Mode

ApprovalRate = Annotated[
    float,
    Field(ge=0.0, le=1.0, allow_inf_nan=False, description="share of orders approved, 0..1"),
]
LatencyMs = Annotated[
    int, Field(ge=0, le=600_000, description="milliseconds from decision to answer")
]
Partitioner = Literal["crc32", "murmur2"]


class SimulatorSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="SIMULATOR_")

    service_name: str = "payment-provider-simulator"
    database_url: str = Field(
        default="postgresql://leadline:leadline@127.0.0.1:5433/simulator",
        min_length=1,
        description="SIMULATOR_DATABASE_URL",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8009, ge=1, le=65535)
    consumer_group: str = Field(default="payment-provider-simulator", min_length=1)
    approval_rate: ApprovalRate = 1.0
    latency_ms: LatencyMs = 0
    mode: Mode = Field(default="answer", description="answer, or silent: never answer requests")
    # crc32 is librdkafka's default (`consistent_random`), as a foreign client would send;
    # murmur2 (`murmur2_random`) is what our own producers and the Java client choose
    partitioner: Partitioner = "crc32"
    publish_poll_ms: int = Field(default=50, ge=1, le=10_000, description="due answers checked")
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)

    def knobs(self) -> Knobs:
        return Knobs(approval_rate=self.approval_rate, latency_ms=self.latency_ms, mode=self.mode)
