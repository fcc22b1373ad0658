"""CommonSettings and the services' own settings classes: environment only, validated,
KAFKA_BOOTSTRAP_SERVERS never prefixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from services.checkout.settings import CheckoutSettings
from services.inventory.settings import InventorySettings
from services.receipts.settings import ReceiptsSettings
from shared.settings import CommonSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_REPLICATION_FACTOR",
        "KAFKA_MIN_INSYNC_REPLICAS",
        "LOG_LEVEL",
        "SERVICE_NAME",
        "HTTP_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("DATABASE_URL", "HTTP_PORT", "LOG_LEVEL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(f"CHECKOUT_{name}", raising=False)


def test_defaults_without_environment() -> None:
    settings = CommonSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.log_level == "INFO"


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9093")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = CommonSettings()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9093"
    assert settings.log_level == "DEBUG"


def test_subclass_prefixes_its_fields_but_not_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "shared-kafka:9092")
    monkeypatch.setenv("CHECKOUT_KAFKA_BOOTSTRAP_SERVERS", "ignored:1")
    monkeypatch.setenv("CHECKOUT_DATABASE_URL", "postgresql://u:p@db:5432/checkout")
    monkeypatch.setenv("CHECKOUT_HTTP_PORT", "8100")
    monkeypatch.setenv("HTTP_PORT", "9999")  # unprefixed: not the checkout's
    monkeypatch.setenv("CHECKOUT_LOG_LEVEL", "warning")
    settings = CheckoutSettings()
    assert settings.kafka_bootstrap_servers == "shared-kafka:9092"
    assert str(settings.database_url) == "postgresql://u:p@db:5432/checkout"
    assert settings.http_port == 8100
    assert settings.log_level == "WARNING"
    assert settings.service_name == "checkout"


def test_topic_durability_defaults_to_a_single_broker() -> None:
    settings = CommonSettings()
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (1, 1)


def test_topic_durability_is_read_unprefixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("KAFKA_MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("CHECKOUT_KAFKA_REPLICATION_FACTOR", "5")  # prefixed: not read
    settings = CheckoutSettings(database_url="postgresql://u:p@db:5432/checkout")
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)


@pytest.mark.parametrize(("replicas", "min_isr"), [(1, 2), (3, 4)])
def test_min_insync_replicas_above_the_replication_factor_is_refused(
    monkeypatch: pytest.MonkeyPatch, replicas: int, min_isr: int
) -> None:
    monkeypatch.setenv("KAFKA_REPLICATION_FACTOR", str(replicas))
    monkeypatch.setenv("KAFKA_MIN_INSYNC_REPLICAS", str(min_isr))
    with pytest.raises(ValidationError, match=r"KAFKA_MIN_INSYNC_REPLICAS \(\d\) must not exceed"):
        CommonSettings()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kafka_replication_factor", 0),
        ("kafka_replication_factor", 6),
        ("kafka_min_insync_replicas", 0),
    ],
)
def test_topic_durability_out_of_range_is_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        CommonSettings(**{field: value})


@pytest.mark.parametrize(
    ("settings", "prefix"),
    [
        (CheckoutSettings, "CHECKOUT_"),
        (InventorySettings, "INVENTORY_"),
        (ReceiptsSettings, "RECEIPTS_"),
    ],
)
def test_each_service_reads_and_validates_its_own_prefix(
    monkeypatch: pytest.MonkeyPatch, settings: type[CommonSettings], prefix: str
) -> None:
    monkeypatch.setenv(f"{prefix}DATABASE_URL", "postgresql://u:p@db:5432/mine")
    monkeypatch.setenv(f"{prefix}HTTP_PORT", "8123")
    read = settings()
    assert (read.database_url, read.http_port) == (
        "postgresql://u:p@db:5432/mine",
        8123,
    )
    monkeypatch.setenv(f"{prefix}HTTP_PORT", "99999")
    with pytest.raises(ValidationError, match="http_port"):
        settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port"),
        ("KAFKA_BOOTSTRAP_SERVERS", "host:99999"),
        ("KAFKA_BOOTSTRAP_SERVERS", " , "),
        ("CHECKOUT_LOG_LEVEL", "chatty"),
        ("CHECKOUT_HTTP_PORT", "eighty"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv("CHECKOUT_DATABASE_URL", "postgresql://u:p@db/checkout")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        CheckoutSettings()


def test_dotenv_files_are_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class DotenvSettings(CommonSettings):
        model_config = SettingsConfigDict(env_file=".env")

    (tmp_path / ".env").write_text("KAFKA_BOOTSTRAP_SERVERS=from-file:9092\n")
    monkeypatch.chdir(tmp_path)
    assert DotenvSettings().kafka_bootstrap_servers == "127.0.0.1:9092"


def test_settings_are_frozen_and_accept_field_names_in_code() -> None:
    settings = CommonSettings(kafka_bootstrap_servers="code:9092")
    assert settings.kafka_bootstrap_servers == "code:9092"
    with pytest.raises(ValidationError):
        settings.log_level = "DEBUG"  # type: ignore[misc]
