"""Checkout's settings, from the environment only (prefix CHECKOUT_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class CheckoutSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="CHECKOUT_")

    service_name: str = "checkout"
    database_url: str = Field(
        default="postgresql://leadline:leadline@127.0.0.1:5433/checkout",
        description="CHECKOUT_DATABASE_URL",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    consumer_group: str = Field(default="checkout", min_length=1, max_length=200)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Off only where the HTTP surface alone is exercised (the API fuzz): then no relay or
    # consumer runs and readiness does not check them.
    run_consumer: bool = True
    run_relay: bool = True
    pool_max_size: int = Field(default=10, ge=1, le=100)
