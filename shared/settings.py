"""The settings every service shares (STYLE 9, DESIGN §8): validated, from the environment only.

A service subclasses `CommonSettings` once, with its own prefix; `KAFKA_BOOTSTRAP_SERVERS` and
the other `KAFKA_*` connection settings stay unprefixed because every process on a cluster
shares their names (the secured profile gives each process its own `KAFKA_SASL_USERNAME`)::

    from pydantic import Field, PostgresDsn
    from pydantic_settings import SettingsConfigDict

    class CheckoutSettings(CommonSettings):
        model_config = SettingsConfigDict(env_prefix="CHECKOUT_")

        service_name: str = "checkout"
        database_url: PostgresDsn | str = Field(description="CHECKOUT_DATABASE_URL")
        http_port: int = Field(default=8000, ge=1, le=65535)

    settings = CheckoutSettings()   # in bootstrap / __main__, never at module level
    # reads CHECKOUT_DATABASE_URL, CHECKOUT_HTTP_PORT, CHECKOUT_LOG_LEVEL, KAFKA_BOOTSTRAP_SERVERS
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import AliasChoices, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.kafka.security import KafkaSecurity, SaslMechanism, SecurityProtocol

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class EnvironmentSettings(BaseSettings):
    """Settings read from the environment (and the constructor) only: a stray .env or secrets
    dir must never change a running service."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


class CommonSettings(EnvironmentSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        # lets code and tests pass `kafka_bootstrap_servers=` despite the env alias
        validate_by_name=True,
        validate_by_alias=True,
        # a refused setting must not echo its input (KAFKA_SASL_PASSWORD) into a log
        hide_input_in_errors=True,
    )

    # An alias switches the env prefix off for this field alone, in subclasses too.
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"),
        description="comma-separated host:port list (env KAFKA_BOOTSTRAP_SERVERS, never prefixed)",
    )
    kafka_replication_factor: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=AliasChoices("KAFKA_REPLICATION_FACTOR"),
        description="replicas of every topic this process creates (env KAFKA_REPLICATION_FACTOR)",
    )
    # acks=all waits for the in-sync replicas only: with min ISR 1 an acknowledged record may
    # live on the leader alone, and dies with it. On a cluster, RF 3 with min ISR 2.
    kafka_min_insync_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=AliasChoices("KAFKA_MIN_INSYNC_REPLICAS"),
        description="min.insync.replicas of every topic this process creates "
        "(env KAFKA_MIN_INSYNC_REPLICAS); at most the replication factor",
    )
    # The secured profile (shared/kafka/security.py): one principal per process, SCRAM over TLS.
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL"),
        description="PLAINTEXT, or SASL_SSL: SCRAM over TLS (env KAFKA_SECURITY_PROTOCOL)",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512",
        validation_alias=AliasChoices("KAFKA_SASL_MECHANISM"),
        description="env KAFKA_SASL_MECHANISM",
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        min_length=1,
        validation_alias=AliasChoices("KAFKA_SASL_USERNAME"),
        description="this process's principal (env KAFKA_SASL_USERNAME)",
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_PASSWORD"),
        description="env KAFKA_SASL_PASSWORD",
    )
    kafka_ssl_cafile: FilePath | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SSL_CAFILE"),
        description="PEM CA certificates the broker's certificate must chain to "
        "(env KAFKA_SSL_CAFILE); unset: the system's",
    )
    topic_prefix: str = Field(
        default="",
        validation_alias=AliasChoices("LEADLINE_TOPIC_PREFIX"),
        pattern=r"^[A-Za-z0-9._-]*$",
        description="namespaces every topic (env LEADLINE_TOPIC_PREFIX); isolates test runs",
    )
    log_level: LogLevel = "INFO"
    service_name: str = Field(default="leadline", min_length=1, max_length=100)

    @cached_property
    def kafka_security(self) -> KafkaSecurity:
        """What every Kafka client of this process is built with (shared/kafka/security.py);
        one per settings object, so its clients share one TLS context."""
        password = self.kafka_sasl_password
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=password.get_secret_value() if password is not None else None,
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile is not None else None,
        )

    def topic(self, name: str) -> str:
        """The physical name of catalogue topic `name` (dead-letter topics follow it)."""
        return self.topic_prefix + name

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _min_isr_within_replicas(self) -> CommonSettings:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            # the broker would accept such a topic, then refuse every acks=all write to it
            raise ValueError(
                f"KAFKA_MIN_INSYNC_REPLICAS ({self.kafka_min_insync_replicas}) must not exceed "
                f"KAFKA_REPLICATION_FACTOR ({self.kafka_replication_factor})"
            )
        return self

    @model_validator(mode="after")
    def _credentials_match_protocol(self) -> CommonSettings:
        given = [
            name
            for name, value in (
                ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                ("KAFKA_SSL_CAFILE", self.kafka_ssl_cafile),
            )
            if value is not None
        ]
        if self.kafka_security_protocol == "SASL_SSL":
            missing = [n for n in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD") if n not in given]
            if missing:
                raise ValueError(f"KAFKA_SECURITY_PROTOCOL=SASL_SSL needs {' and '.join(missing)}")
        elif given:
            # a secured deployment's credentials on a plaintext connection: a mix-up, and
            # silently ignoring them would hide it until the broker refuses the connection
            raise ValueError(
                f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL is PLAINTEXT:"
                " set KAFKA_SECURITY_PROTOCOL=SASL_SSL, or unset them"
            )
        return self

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",") if part.strip()]
        if not servers:
            raise ValueError("needs at least one host:port")
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)
