"""The orchestrator's one settings class, read from the environment only (STYLE 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.orchestrator.saga import Timeouts
from shared.settings import CommonSettings


class OrchestratorSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_")

    service_name: str = "orchestrator"
    database_url: str = Field(
        default="postgresql://leadline:leadline@127.0.0.1:5433/orchestrator",
        min_length=1,
        description="ORCHESTRATOR_DATABASE_URL: the saga view (inspection), not the saga state",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8004, ge=1, le=65535)
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)
    # faust: the app id is the consumer group and names the topics faust creates itself
    app_id: str = Field(default="leadline-orchestrator", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    data_dir: Path = Field(default=Path(".run/orchestrator"), description="local table state")
    store: Literal["rocksdb", "memory"] = Field(
        default="rocksdb", description="table store; rocksdb (rocksdict) recovers faster"
    )
    standby_replicas: int = Field(default=1, ge=0, le=3)
    session_timeout: float = Field(default=10.0, ge=6.0, description="seconds")
    # how long each waiting status waits for its reply before it compensates (or re-sends)
    reserve_timeout: float = Field(default=30.0, gt=0)
    pay_timeout: float = Field(default=30.0, gt=0)
    confirm_timeout: float = Field(default=30.0, gt=0)
    receipt_timeout: float = Field(default=120.0, gt=0)
    compensate_timeout: float = Field(default=30.0, gt=0)
    deadline_scan_seconds: float = Field(default=1.0, gt=0)
    lag_report_seconds: float = Field(
        default=10.0, gt=0, description="how often leadline_consumer_lag is exported"
    )
    max_attempts: int = Field(default=5, ge=1, description="per message, then dead-lettered")
    liveness_window: float = Field(default=60.0, gt=0)
    stall_seconds: float = Field(
        default=20.0,
        gt=0,
        description="a held partition with records waiting and none delivered for this long is"
        " read again from the next offset to process (a stall of faust's fetching)",
    )

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(
            reserve=self.reserve_timeout,
            pay=self.pay_timeout,
            confirm=self.confirm_timeout,
            receipt=self.receipt_timeout,
            compensate=self.compensate_timeout,
        )

    @property
    def faust_id(self) -> str:
        """The app id under the topic prefix, so a prefixed copy of the system is separate."""
        return self.topic_prefix + self.app_id
