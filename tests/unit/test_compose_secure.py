"""docker-compose.secure.yml, rendered on top of docker-compose.yml by a compose client's `config`
(no engine needed): the broker speaks only SASL_SSL to clients and mutual TLS to its controller,
denies by default, and every service connects as its own principal with its own password alone.
Running the stack is `make containers SECURE=1` (podman), not this test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.kafka.acls import PRINCIPALS, password_variable
from tests.support.system import PRINCIPAL_OF

ROOT = Path(__file__).resolve().parents[2]
FILES = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.secure.yml")]
# every secret distinct, so that whose password a service holds can be told from its value
SECRETS = {
    "AUTH_JWT_SECRET": "compose-test-secret",
    "POSTGRES_PASSWORD": "compose-test-pw",
    "KAFKA_KEYSTORE_PASSWORD": "keystore-pw",
    **{password_variable(p): f"pw-of-{p}" for p in ("admin", "broker", *PRINCIPALS)},
}


def _client() -> list[str]:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        try:
            probe = subprocess.run([*cmd, "version"], capture_output=True, timeout=60, check=False)
        except (FileNotFoundError, PermissionError):
            continue
        if probe.returncode == 0:
            return cmd
    pytest.fail("no compose client: `make setup` installs Debian's docker-compose")


def _config(secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [*_client(), *FILES, "config"],
        capture_output=True,
        text=True,
        env={**env, **secrets},
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    result = _config(SECRETS)
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return services


@pytest.mark.parametrize("missing", ["KAFKA_KEYSTORE_PASSWORD", "KAFKA_PASSWORD_INVENTORY"])
def test_its_secrets_have_no_default(missing: str) -> None:
    result = _config({k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr


def test_the_broker_takes_no_plaintext_and_denies_by_default(rendered: dict[str, Any]) -> None:
    env = rendered["kafka"]["environment"]
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols == {"SECURE": "SASL_SSL", "CONTROLLER": "SSL", "HOST": "SASL_SSL"}
    listeners = {entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")}
    assert listeners == set(protocols)
    assert env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert set(env["KAFKA_SUPER_USERS"].split(";")) == {
        "User:admin",
        "User:broker",
        "User:CN=leadline-broker",
    }
    assert "--command-config" in rendered["kafka"]["healthcheck"]["test"][-1]


@pytest.mark.parametrize(("service", "principal"), PRINCIPAL_OF.items())
def test_every_service_connects_as_itself_with_its_own_password_only(
    rendered: dict[str, Any], service: str, principal: str
) -> None:
    env = rendered[service]["environment"]
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_USERNAME"] == principal
    assert env["KAFKA_SASL_PASSWORD"] == SECRETS[password_variable(principal)]
    others = {v for k, v in SECRETS.items() if k.startswith("KAFKA_")} - {
        env["KAFKA_SASL_PASSWORD"]
    }
    assert not others & {str(v) for v in env.values()}
    cafile = Path(env["KAFKA_SSL_CAFILE"])
    assert f"kafka-tls:{cafile.parent}:ro" in rendered[service]["volumes"]


def test_the_principals_and_acls_are_made_before_the_topics_as_the_admin(
    rendered: dict[str, Any],
) -> None:
    topics = rendered["topics"]
    env = topics["environment"]
    assert env["KAFKA_SASL_USERNAME"] == "admin"
    assert {password_variable(p) for p in PRINCIPALS} <= set(env)
    script = topics["command"][-1]
    assert script.index("shared.kafka.acls apply") < script.index(
        "shared.kafka.admin ensure-topics"
    )
    assert "--passwords-from-env" in script
