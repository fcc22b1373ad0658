"""The testcontainers path of `tests/conftest.py`, for a contributor with a Docker engine and no
`make up`: run for real here on podman's Docker-compatible API (`make test-testcontainers` runs
the whole integration suite that way). A nested pytest, so its `infra` fixture sees no
`KAFKA_BOOTSTRAP_SERVERS`/`POSTGRES_DSN` and starts Kafka and PostgreSQL as containers from the
images the container path builds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.containers
def test_the_platform_and_port_contracts_pass_on_testcontainers() -> None:
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "deploy/containers/testcontainers.sh"),
            "tests/integration/test_kafka_platform.py",
            "tests/integration/test_ports_contract.py",
            "-q",
            "-s",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # the session's infrastructure came from containers of the locally built images
    assert "infra: testcontainers, localhost/leadline-kafka:" in result.stdout, result.stdout[
        -2000:
    ]
    assert "localhost/leadline-postgres:" in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary
    assert "failed" not in summary
    assert "error" not in summary
