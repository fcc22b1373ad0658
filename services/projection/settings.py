"""The projection's one settings class, read from the environment only (STYLE 9)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class ProjectionSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="PROJECTION_")

    service_name: str = "projection"
    database_url: str = Field(
        default="postgresql://leadline:leadline@127.0.0.1:5433/projection",
        min_length=1,
        description="PROJECTION_DATABASE_URL",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8003, ge=1, le=65535)
    consumer_group: str = Field(
        default="projection",
        min_length=1,
        description="prefix: one group per view, e.g. projection.orders",
    )
    instance_id: str | None = None
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)
    # records of one partition per database transaction: the inbox row of each stays in the
    # same transaction as its rows, so the guarantee is per event whatever the batch
    transaction_batch: int = Field(default=100, ge=1, le=1000)
    # shared out between the assigned partitions (a view reads up to 24): enough for each to
    # fill a transaction batch
    max_poll_records: int = Field(default=2000, ge=1, le=20_000)

    read_wait_seconds: float = Field(
        default=5.0, gt=0, le=60, description="how long a min_version query waits for the view"
    )
    ready_max_lag: int = Field(
        default=10_000, ge=0, description="readiness fails when a view is further behind"
    )
