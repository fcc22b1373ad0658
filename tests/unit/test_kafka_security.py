"""How settings become Kafka client options: PLAINTEXT adds none (every client exactly as before
the secured profile), SASL_SSL is validated at start-up and reaches every client the code
builds, faust's and librdkafka's included."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import certifi
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from services.orchestrator.credentials import faust_credentials
from shared.kafka.security import PLAINTEXT, KafkaSecurity
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
KAFKA_ENV = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KAFKA_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cafile() -> str:
    # any PEM bundle will do for building a context: certifi's (httpx's) is always installed
    return certifi.where()


def secured(cafile: str | None = None) -> KafkaSecurity:
    return KafkaSecurity("SASL_SSL", username="inventory", password="s3cret", cafile=cafile)


def test_plaintext_by_default_adds_no_client_option() -> None:
    settings = CommonSettings()
    assert settings.kafka_security == PLAINTEXT
    assert PLAINTEXT.aiokafka() == {}
    assert PLAINTEXT.librdkafka() == {}
    assert faust_credentials(PLAINTEXT) is None


def test_sasl_ssl_is_read_unprefixed_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, cafile: str
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "checkout")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", cafile)
    security = CommonSettings().kafka_security
    assert security == KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "checkout", "s3cret", cafile)


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "checkout"},
            "needs KAFKA_SASL_PASSWORD",
        ),
        ({"KAFKA_SASL_USERNAME": "checkout"}, "KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "PLAINTEXT' or 'SASL_SSL'"),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "SCRAM-SHA-512"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
            "does not point to a file",
        ),
    ],
)
def test_a_half_configured_profile_is_a_clear_start_up_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], refusal: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=refusal):
        CommonSettings()


def test_the_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-very-secret")
    with pytest.raises(ValidationError) as refused:
        CommonSettings()  # a password on a plaintext connection: refused
    assert "hunter2" not in str(refused.value)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "checkout")
    settings = CommonSettings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(settings.kafka_security)
    assert "hunter2" not in settings.kafka_security.describe()


def test_the_client_options_verify_the_broker(cafile: str) -> None:
    options = secured(cafile).aiokafka()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "inventory",
        "s3cret",
    )
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert secured(cafile).librdkafka() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "inventory",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": cafile,
    }


def test_sasl_ssl_without_credentials_cannot_even_be_built() -> None:
    with pytest.raises(ValueError, match="username and a password"):
        KafkaSecurity("SASL_SSL", username="inventory")


def test_faust_gets_the_same_options_as_our_own_clients(cafile: str) -> None:
    security = secured(cafile)
    assert dict(credentials_to_aiokafka_auth(faust_credentials(security))) == security.aiokafka()


# ------------------------------------------------ every client the code builds passes them

CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "AIOKafkaClient"}


def _constructions(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id in CLIENTS)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "App")
        )
    ]


def _passes_security(call: ast.Call) -> bool:
    if isinstance(call.func, ast.Attribute):  # faust.App
        return any(k.arg == "broker_credentials" for k in call.keywords)
    return any(
        k.arg is None
        and isinstance(k.value, ast.Call)
        and isinstance(k.value.func, ast.Attribute)
        and k.value.func.attr == "aiokafka"
        for k in call.keywords
    )


def test_every_kafka_client_in_the_code_is_built_with_the_security_options() -> None:
    found, missing = 0, []
    for layer in ("shared", "services", "simulators"):
        for path in (ROOT / layer).rglob("*.py"):
            for call in _constructions(ast.parse(path.read_text())):
                found += 1
                if not _passes_security(call):
                    missing.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert found >= 15, "no client constructions found: wrong ROOT?"
    assert missing == []
