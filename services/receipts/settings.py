"""Receipts' one settings class, read from the environment only (STYLE 9)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class ReceiptsSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="RECEIPTS_")

    service_name: str = "receipts"
    database_url: str = Field(
        default="postgresql://leadline:leadline@127.0.0.1:5433/receipts",
        min_length=1,
        description="RECEIPTS_DATABASE_URL",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8002, ge=1, le=65535)
    consumer_group: str = Field(default="receipts", min_length=1)
    instance_id: str | None = None
    # the API takes no request bodies: anything sizeable is refused before it is read
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)

    issuer: str = Field(default="LL", pattern=r"^[A-Z0-9]{1,10}$", description="number prefix")
    tax_rate: Decimal = Field(
        default=Decimal("0.20"), ge=0, lt=10, description="charged on top of the subtotal"
    )

    mailbox_dir: Path = Path(".run/mailbox")
    smtp_host: str | None = Field(default=None, description="set to deliver by SMTP instead")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "receipts@leadline.local"
    # OrderPlaced names a customer id, not an address: local runs mail <id>@<this domain>
    customer_mail_domain: str = "customers.leadline.local"

    delivery_poll_seconds: float = Field(default=1.0, gt=0)
    delivery_backoff_initial: float = Field(default=1.0, gt=0)
    delivery_backoff_max: float = Field(default=300.0, gt=0)

    @field_validator("tax_rate")
    @classmethod
    def _four_places(cls, value: Decimal) -> Decimal:
        # the receipts table stores numeric(6, 4): more places would be rounded on the way in
        if value != value.quantize(Decimal("0.0001")):
            raise ValueError("at most four decimal places")
        return value
