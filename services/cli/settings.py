"""The CLI's settings: the environment the services themselves read (STYLE 9).

An operator who has a service's environment (its `<NAME>_DATABASE_URL`, `<NAME>_HTTP_PORT`,
`KAFKA_BOOTSTRAP_SERVERS`, `LEADLINE_TOPIC_PREFIX`) points the CLI at that deployment with the
same variables; the defaults are `make up`'s. The CLI's own settings carry the `LEADLINE_`
prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

_LOCAL_SERVER = "postgresql://leadline:leadline@127.0.0.1:5433"


def _env(name: str, default: Any) -> Any:
    """A field read from `name`, exactly as the service that owns it reads it."""
    return Field(default=default, validation_alias=AliasChoices(name), description=name)


@dataclass(frozen=True)
class Part:
    """A process of the system as the CLI reaches it: its health URL and its database."""

    name: str
    url: str
    database_url: str


class CliSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LEADLINE_")

    service_name: str = "leadline-cli"
    services_host: str = Field(
        default="127.0.0.1", description="LEADLINE_SERVICES_HOST: where the services' HTTP answers"
    )
    timeout: float = Field(
        default=5.0, gt=0, le=120, description="LEADLINE_TIMEOUT: seconds per health probe"
    )

    checkout_database_url: str = _env("CHECKOUT_DATABASE_URL", f"{_LOCAL_SERVER}/checkout")
    inventory_database_url: str = _env("INVENTORY_DATABASE_URL", f"{_LOCAL_SERVER}/inventory")
    receipts_database_url: str = _env("RECEIPTS_DATABASE_URL", f"{_LOCAL_SERVER}/receipts")
    projection_database_url: str = _env("PROJECTION_DATABASE_URL", f"{_LOCAL_SERVER}/projection")
    orchestrator_database_url: str = _env(
        "ORCHESTRATOR_DATABASE_URL", f"{_LOCAL_SERVER}/orchestrator"
    )
    simulator_database_url: str = _env("SIMULATOR_DATABASE_URL", f"{_LOCAL_SERVER}/simulator")

    checkout_http_port: int = _env("CHECKOUT_HTTP_PORT", 8000)
    inventory_http_port: int = _env("INVENTORY_HTTP_PORT", 8001)
    receipts_http_port: int = _env("RECEIPTS_HTTP_PORT", 8002)
    projection_http_port: int = _env("PROJECTION_HTTP_PORT", 8003)
    orchestrator_http_port: int = _env("ORCHESTRATOR_HTTP_PORT", 8004)
    simulator_http_port: int = _env("SIMULATOR_HTTP_PORT", 8009)

    def parts(self) -> list[Part]:
        """Every process `make up` starts, the payment-provider simulator last."""
        names = ("checkout", "inventory", "receipts", "projection", "orchestrator", "simulator")
        return [
            Part(
                name,
                f"http://{self.services_host}:{getattr(self, f'{name}_http_port')}",
                getattr(self, f"{name}_database_url"),
            )
            for name in names
        ]

    def logical(self, physical: str) -> str:
        """A topic's catalogue name: what the operator typed, what the CLI shows."""
        return physical.removeprefix(self.topic_prefix)
