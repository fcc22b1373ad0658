"""The container path end to end (issue 11), exactly as `make containers` runs it:
deploy/containers/containers.sh builds every image (base, layers and jars cached after the first
run), brings the compose stack up on podman stage by stage, polls every health check, places
one order over HTTP that must reach `confirmed`, and tears the stack down. Then the same with
the secured Kafka profile on top (`make containers SECURE=1`, docker-compose.secure.yml), tried
from this host as the operator and as a client that should be refused.

Each stack has its own compose project and free host ports, so it runs beside `make up` (and a
`make containers` stack). A failing stage fails with the logs of the containers that were not
healthy. Measured on a 2-core machine: cold (no base image, no layers, no probe jar) 215-220 s,
of which the mmdebstrap base is ~90 s; warm (everything cached) 52-65 s per stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from shared.kafka.security import PLAINTEXT, KafkaSecurity
from tests.support import eventually
from tests.support.kafka_access import cluster_id, write
from tests.support.processes import free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy/containers/containers.sh"
STATE = ROOT / ".run/containers"
LEADLINE = ROOT / ".venv/bin/leadline"
PROJECT = "leadline-containers-test"
SECURE_PROJECT = "leadline-containers-secure-test"
HOST_PORTS = (
    "CHECKOUT_HOST_PORT",
    "INVENTORY_HOST_PORT",
    "RECEIPTS_HOST_PORT",
    "PROJECTION_HOST_PORT",
    "ORCHESTRATOR_HOST_PORT",
    "SIMULATOR_HOST_PORT",
    "KAFKA_HOST_PORT",
    "POSTGRES_HOST_PORT",
)


def _stack_env(project: str, *, secure: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["COMPOSE_PROJECT_NAME"] = project
    env["CONTAINERS_CONF"] = str(ROOT / "deploy/containers/containers.conf")
    env["LEADLINE_SECURE"] = "1" if secure else "0"
    env.update(zip(HOST_PORTS, map(str, free_ports(len(HOST_PORTS))), strict=True))
    return env


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return _stack_env(PROJECT)


@pytest.fixture(scope="module")
def images(env: dict[str, str]) -> None:
    """What the stacks run on: podman and its tools installed, every image built (cached)."""
    for stage, timeout in (("install", 600), ("images", 3000)):
        done = _stage(stage, env, timeout)
        assert done.returncode == 0, f"{stage} failed:\n{done.stderr}"


def _stage(stage: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), stage],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def _ours(what: str, env: dict[str, str]) -> list[str]:
    """Names of the project's containers (or volumes, networks), stopped ones included."""
    label = f"label=io.podman.compose.project={env['COMPOSE_PROJECT_NAME']}"
    args = {
        "container": ["ps", "-a", "--filter", label, "--format", "{{.Names}}"],
        "volume": ["volume", "ls", "--filter", label, "--format", "{{.Name}}"],
        "network": ["network", "ls", "--filter", label, "--format", "{{.Name}}"],
    }[what]
    listed = subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return listed.stdout.split()


def _host_only_certificates() -> list[str]:
    """The base64 bodies of CAs this host adds to Debian's (the proxy's among them)."""
    bodies = []
    for pem in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        lines = pem.read_text().split("-----")
        bodies += ["".join(lines[i + 1].split()) for i, part in enumerate(lines) if "BEGIN" in part]
    return bodies


def _assert_no_host_ca_in(image: str, env: dict[str, str]) -> None:
    # the build borrowed the host's bundle as a secret: no layer may have kept it
    bundle = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            image,
            "/etc/ssl/certs/ca-certificates.crt",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    flat = "".join(bundle.split())
    for body in _host_only_certificates():
        assert body not in flat, f"{image} carries a CA certificate of this host"


@contextlib.contextmanager
def _stack(env: dict[str, str]) -> Iterator[None]:
    """The stack up, one order confirmed through it; down afterwards, with nothing left behind."""
    try:
        up = _stage("up", env, timeout=900)
        # containers.sh prints the logs of a container that fails its health check
        assert up.returncode == 0, f"the stack did not come up healthy:\n{up.stderr}"
        smoke = _stage("smoke", env, timeout=300)
        if smoke.returncode != 0:
            logs = _stage("logs", env, timeout=120).stderr
            pytest.fail(f"the order was not confirmed:\n{smoke.stderr}\n{logs}")
        yield
    finally:
        down = _stage("down", env, timeout=300)
    assert down.returncode == 0, down.stderr
    for what in ("container", "volume", "network"):
        assert _ours(what, env) == [], f"{what}s left behind"
    project = env["COMPOSE_PROJECT_NAME"]
    assert not list(STATE.glob(f"{project}.*")), "the stack's secrets left behind"


@pytest.mark.containers
@pytest.mark.timeout(3600)  # a cold cache builds a Debian base, a JRE and the wheels
def test_the_images_build_and_the_stack_confirms_an_order(
    images: None, env: dict[str, str]
) -> None:
    _assert_no_host_ca_in("localhost/leadline:local", env)
    with _stack(env):
        # the CLI pointed at the stack by the environment containers.sh writes for it
        assert _leadline(env, "status")["ok"] is True


def _env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _leadline(env: dict[str, str], *args: str) -> Any:
    """`leadline <args> --json` with the environment the stack's operator file gives."""
    operator = _env_file(STATE / f"{env['COMPOSE_PROJECT_NAME']}.operator.env")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PG"))}
    done = subprocess.run(
        [str(LEADLINE), *args, "--json"],
        env={**clean, **operator},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"leadline {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout)


async def _try_the_secured_broker(env: dict[str, str]) -> None:
    project = env["COMPOSE_PROJECT_NAME"]
    operator = _env_file(STATE / f"{project}.operator.env")
    passwords = _env_file(STATE / f"{project}.secure.env")
    bootstrap, cafile = operator["KAFKA_BOOTSTRAP_SERVERS"], operator["KAFKA_SSL_CAFILE"]

    def as_(principal: str, password: str | None = None) -> KafkaSecurity:
        variable = "KAFKA_PASSWORD_" + principal.upper().replace("-", "_")
        secret = passwords[variable] if password is None else password
        return KafkaSecurity("SASL_SSL", username=principal, password=secret, cafile=cafile)

    # the host listener, as the broker's certificate names it (localhost): each refusal is
    # checked next to a principal that is let in, so a broker merely down cannot pass for one
    # that refuses
    assert await cluster_id(bootstrap, as_("operator"))
    with pytest.raises(KafkaConnectionError):
        await cluster_id(bootstrap, PLAINTEXT)
    with pytest.raises(KafkaConnectionError):
        await cluster_id(bootstrap, as_("inventory", password="not-the-password"))
    refused = await write(bootstrap, as_("inventory"), "checkout.commands")
    assert isinstance(refused, TopicAuthorizationFailedError), refused

    # inventory may write its own topic; what it writes there that is not an event is
    # dead-lettered with the reason by the services that read it, as themselves
    marker = uuid.uuid4().hex
    garbage = json.dumps({"not": "an envelope", "marker": marker}).encode()
    assert await write(bootstrap, as_("inventory"), "inventory.events", garbage) is None

    def dead_letters() -> list[dict[str, Any]]:
        found = _leadline(env, "dlq", "list", "--topic", "inventory.events")["dead_letters"]
        return [d for d in found if marker in (d["record"]["value"] or "")]

    letters: list[dict[str, Any]] = await eventually(
        dead_letters,
        lambda letters: len(letters) > 0,
        timeout=120,
        interval=1,
        what="the garbage record dead-lettered",
    )
    assert {d["reason"] for d in letters} == {"invalid-envelope"}


@pytest.mark.containers
@pytest.mark.timeout(3600)
def test_the_secured_stack_confirms_an_order_and_refuses_what_its_acls_deny(
    images: None,
) -> None:
    env = _stack_env(SECURE_PROJECT, secure=True)
    with _stack(env):
        status = _leadline(env, "status")
        assert status["ok"] is True, status
        asyncio.run(_try_the_secured_broker(env))
