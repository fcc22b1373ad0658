"""The container path end to end (issue 11), exactly as `make containers` runs it:
deploy/containers/containers.sh builds every image (base, layers and jars cached after the first
run), brings the compose stack up on podman stage by stage, polls every health check, places
one order over HTTP that must reach `confirmed`, and tears the stack down.

Its own compose project and free host ports, so it runs beside `make up` (and a `make
containers` stack). A failing stage fails with the logs of the containers that were not healthy.
Measured on a 2-core machine: cold (no base image, no layers, no probe jar) 215-220 s, of which
the mmdebstrap base is ~90 s; warm (everything cached) 52-65 s.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy/containers/containers.sh"
PROJECT = "leadline-containers-test"
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


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    env = dict(os.environ)
    env["COMPOSE_PROJECT_NAME"] = PROJECT
    env["CONTAINERS_CONF"] = str(ROOT / "deploy/containers/containers.conf")
    env.update(zip(HOST_PORTS, map(str, _free_ports(len(HOST_PORTS))), strict=True))
    return env


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
    label = f"label=io.podman.compose.project={PROJECT}"
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


@pytest.mark.containers
@pytest.mark.timeout(3600)  # a cold cache builds a Debian base, a JRE and the wheels
def test_the_images_build_and_the_stack_confirms_an_order(env: dict[str, str]) -> None:
    for stage, timeout in (("install", 600), ("images", 3000)):
        done = _stage(stage, env, timeout)
        assert done.returncode == 0, f"{stage} failed:\n{done.stderr}"
    _assert_no_host_ca_in("localhost/leadline:local", env)
    try:
        up = _stage("up", env, timeout=900)
        # containers.sh prints the logs of a container that fails its health check
        assert up.returncode == 0, f"the stack did not come up healthy:\n{up.stderr}"
        smoke = _stage("smoke", env, timeout=300)
        if smoke.returncode != 0:
            logs = _stage("logs", env, timeout=120).stderr
            pytest.fail(f"the order was not confirmed:\n{smoke.stderr}\n{logs}")
    finally:
        down = _stage("down", env, timeout=300)
    assert down.returncode == 0, down.stderr
    for what in ("container", "volume", "network"):
        assert _ours(what, env) == [], f"{what}s left behind"
