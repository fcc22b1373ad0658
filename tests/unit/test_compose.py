"""docker-compose.yml is valid and wires the system as production expects.

A compose client's `config` command validates and renders the file without a Docker engine:
the `docker compose` plugin where it exists, else Debian's `docker-compose` (installed by
`make setup` / `infra.sh up`). No client is a failure, never a skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {
    "checkout": 8000,
    "inventory": 8001,
    "receipts": 8002,
    "projection": 8003,
    "orchestrator": 8004,
}
SECRETS = {"AUTH_JWT_SECRET": "compose-test-secret", "POSTGRES_PASSWORD": "compose-test-pw"}


def _works(cmd: list[str]) -> bool:
    try:
        probe = subprocess.run([*cmd, "version"], capture_output=True, timeout=60, check=False)
    except (FileNotFoundError, PermissionError):
        return False
    return probe.returncode == 0


@pytest.fixture(scope="module")
def compose() -> list[str]:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if _works(cmd):
            return cmd
    pytest.fail(
        "no compose client: neither `docker compose` nor `docker-compose` works; "
        "`make setup` installs Debian's docker-compose"
    )


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(overrides)
    return env


def _config(compose: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(compose: list[str]) -> dict[str, Any]:
    result = _config(compose, _env(**SECRETS))
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config["services"]


def _published(port: Any) -> tuple[str, int]:
    """(host ip, host port) of a rendered port, in either the long or the short syntax."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), int(port["published"])
    parts = str(port).split("/")[0].split(":")
    host_ip = parts[0] if len(parts) == 3 else ""
    return host_ip, int(parts[-2])


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service["depends_on"].items()}


def test_secrets_have_no_default(compose: list[str]) -> None:
    for missing in SECRETS:
        env = _env(**{k: v for k, v in SECRETS.items() if k != missing})
        result = _config(compose, env)
        assert result.returncode != 0, f"compose renders without {missing}"
        assert missing in result.stderr


def test_kafka_is_apache_kafka_4_in_kraft_mode_for_one_node(rendered: dict[str, Any]) -> None:
    kafka = rendered["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert str(env[key]) == "1", key
    assert "healthcheck" in kafka


def test_postgres_16_with_healthcheck_and_database_per_service(rendered: dict[str, Any]) -> None:
    assert rendered["postgres"]["image"] == "postgres:16"
    assert "healthcheck" in rendered["postgres"]
    init = rendered["postgres-init"]
    assert _depends(init) == {"postgres": "service_healthy"}
    databases = init["environment"]["DATABASES"].split()
    assert set(SERVICES) | {"projection", "orchestrator", "simulator"} <= set(databases)


def test_topics_are_created_from_the_catalogue_once_kafka_is_healthy(
    rendered: dict[str, Any],
) -> None:
    topics = rendered["topics"]
    assert topics["command"] == [
        "python",
        "-m",
        "shared.kafka.admin",
        "ensure-topics",
        "--bootstrap",
        "kafka:9092",
    ]
    assert _depends(topics) == {"kafka": "service_healthy"}


@pytest.mark.parametrize(("name", "port"), SERVICES.items())
def test_service_runs_from_the_one_image_and_waits_for_healthy_infrastructure(
    rendered: dict[str, Any], name: str, port: int
) -> None:
    service = rendered[name]
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert service["image"] == rendered["topics"]["image"]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert _depends(service) == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
        "postgres-init": "service_completed_successfully",
        "topics": "service_completed_successfully",
    }
    env = service["environment"]
    upper = name.upper()
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert str(env[f"{upper}_HTTP_PORT"]) == str(port)
    assert env[f"{upper}_DATABASE_URL"].endswith(f"@postgres:5432/{name}")
    assert env["AUTH_JWT_SECRET"] == SECRETS["AUTH_JWT_SECRET"]
    assert f"127.0.0.1:{port}/health/ready" in " ".join(service["healthcheck"]["test"])


def test_the_payment_simulator_runs_from_the_one_image_outside_services(
    rendered: dict[str, Any],
) -> None:
    simulator = rendered["simulator"]
    assert simulator["image"] == rendered["topics"]["image"]
    assert simulator["command"] == ["python", "-m", "simulators.payment_provider"]
    assert _depends(simulator) == _depends(rendered["checkout"])
    env = simulator["environment"]
    assert str(env["SIMULATOR_HTTP_PORT"]) == "8009"
    assert env["SIMULATOR_DATABASE_URL"].endswith("@postgres:5432/simulator")
    assert "127.0.0.1:8009/health/ready" in " ".join(simulator["healthcheck"]["test"])


def test_configuration_comes_from_the_environment(compose: list[str]) -> None:
    result = _config(compose, _env(**SECRETS, CHECKOUT_HOST_PORT="18000", LOG_LEVEL="DEBUG"))
    assert result.returncode == 0, result.stderr
    checkout = yaml.safe_load(result.stdout)["services"]["checkout"]
    assert checkout["environment"]["CHECKOUT_LOG_LEVEL"] == "DEBUG"
    assert [_published(p)[1] for p in checkout["ports"]] == [18000]


def test_every_published_port_is_on_loopback_and_clear_of_make_up(
    rendered: dict[str, Any],
) -> None:
    # `make up` owns 8000-8009, 9092 and 5433 on this machine; the stack must run beside it
    bare_machine = {*range(8000, 8010), 9092, 9093, 5433}
    for name, service in rendered.items():
        for port in service.get("ports", []):
            host_ip, published = _published(port)
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'every address'}"
            assert published not in bare_machine, f"{name} publishes {published}"


def test_a_newcomer_starts_from_the_committed_env_example(compose: list[str]) -> None:
    example = ROOT / ".env.example"
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "--env-file", str(example), "config"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    env = yaml.safe_load(result.stdout)["services"]["checkout"]["environment"]
    # the services refuse a shorter secret: the example must start, not just render
    assert len(env["AUTH_JWT_SECRET"].encode()) >= 32


def test_kafka_and_postgres_images_are_configurable(compose: list[str]) -> None:
    images = {"KAFKA_IMAGE": "localhost/k:1", "POSTGRES_IMAGE": "localhost/pg:15"}
    result = _config(compose, _env(**SECRETS, **images))
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["kafka"]["image"] == "localhost/k:1"
    assert services["postgres"]["image"] == services["postgres-init"]["image"] == "localhost/pg:15"


def test_the_services_run_as_the_images_non_root_user_under_an_init(
    rendered: dict[str, Any],
) -> None:
    for name in [*SERVICES, "simulator", "topics"]:
        assert rendered[name]["user"] == "leadline", name
        # python as PID 1 ignores SIGTERM: without an init every stop ends in SIGKILL
        assert rendered[name]["init"] is True, name


def test_state_that_outlives_a_container_is_on_a_volume(rendered: dict[str, Any]) -> None:
    for name, variable in (
        ("orchestrator", "ORCHESTRATOR_DATA_DIR"),
        ("receipts", "RECEIPTS_MAILBOX_DIR"),
    ):
        service = rendered[name]
        path = service["environment"][variable]
        targets = [
            v["target"] if isinstance(v, dict) else str(v).split(":")[1] for v in service["volumes"]
        ]
        assert path in targets, f"{name}: {variable}={path} is not on a volume"
