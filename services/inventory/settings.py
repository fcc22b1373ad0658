"""Inventory's one settings class, read from the environment only (STYLE 9)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class InventorySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_")

    service_name: str = "inventory"
    database_url: str = Field(
        default="postgresql://leadline:leadline@127.0.0.1:5433/inventory",
        min_length=1,
        description="INVENTORY_DATABASE_URL",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8001, ge=1, le=65535)
    consumer_group: str = Field(default="inventory", min_length=1)
    # a stable id per instance lets a restarted process take its partitions straight back
    instance_id: str | None = None
    seed_stock: bool = Field(default=True, description="insert the local starting stock")
    # the API takes no request bodies: anything sizeable is refused before it is read
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)
