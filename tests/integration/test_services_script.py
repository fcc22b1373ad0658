"""`deploy/local/services.sh` at LEADLINE_SCALE=2: two instances of each consumer service on one
database and one consumer group each, the order saga running across all of them, and `down`
leaving no process behind. Its own run folder, ports, databases and topics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Infra
from tests.support import eventually, unique
from tests.support.processes import free_ports
from tests.support.system import SECRET, bearer, databases

pytestmark = pytest.mark.integration

SCALED = ("checkout", "inventory", "receipts", "projection", "orchestrator")
SERVICES = (*SCALED, "simulator")


def script(command: str, env: dict[str, str], timeout: float = 240) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "deploy/local/services.sh"), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"services.sh {command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def pid_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture
def ports() -> dict[str, list[int]]:
    numbers = iter(free_ports(len(SCALED) + len(SERVICES)))  # two of each scaled one
    return {s: [next(numbers) for _ in range(2 if s in SCALED else 1)] for s in SERVICES}


@pytest.fixture
async def dsns(infra: Infra) -> AsyncIterator[dict[str, str]]:
    async with databases(infra.postgres_dsn) as made:
        yield made


async def test_two_instances_of_each_service_run_the_saga_and_stop_cleanly(
    ports: dict[str, list[int]],
    dsns: dict[str, str],
    catalogue_prefix: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    env = {
        **os.environ,
        "LEADLINE_RUN_DIR": str(run),
        "LEADLINE_PYTHON": sys.executable,
        "LEADLINE_SCALE": "2",
        "LEADLINE_SERVICES": " ".join(f"{s}:{','.join(map(str, p))}" for s, p in ports.items()),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
        "AUTH_JWT_SECRET": SECRET,
        "RECEIPTS_MAILBOX_DIR": str(tmp_path / "mailbox"),
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "orchestrator"),
        **{f"{s.upper()}_DATABASE_URL": dsn for s, dsn in dsns.items()},
        # groups of this test alone: both instances of a service share theirs
        **{f"{s.upper()}_CONSUMER_GROUP": unique(s) for s in SCALED if s != "orchestrator"},
    }
    instances = [
        (s if k == 0 else f"{s}-{k + 1}", port)
        for s, numbers in ports.items()
        for k, port in enumerate(numbers)
    ]
    try:
        script("up", env)
        pids = {name: int((run / "pids" / f"{name}.pid").read_text()) for name, _ in instances}
        async with httpx.AsyncClient(timeout=5) as http:
            for name, port in instances:
                ready = await http.get(f"http://127.0.0.1:{port}/health/ready")
                assert ready.status_code == 200, (name, ready.text)
            lines = {line.split()[0]: line for line in script("status", env).splitlines()}
            for name, port in instances:
                assert f" running  http://127.0.0.1:{port} " in lines[name], lines
            # `up` again changes nothing
            script("up", env)
            again = {name: int((run / "pids" / f"{name}.pid").read_text()) for name, _ in instances}
            assert again == pids

            # placed on checkout's second instance, carried through by whichever instances
            # hold the partitions, read back from the first
            second, first = ports["checkout"][1], ports["checkout"][0]
            placed = await http.post(
                f"http://127.0.0.1:{second}/orders",
                json={"lines": [{"sku": "TEA-001", "quantity": 1}]},
                headers={**bearer("alice"), "Idempotency-Key": unique("key")},
            )
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["order_id"]

            async def order() -> dict[str, object]:
                got = await http.get(
                    f"http://127.0.0.1:{first}/orders/{order_id}", headers=bearer("alice")
                )
                body: dict[str, object] = got.json()
                return body

            confirmed: dict[str, object] = await eventually(
                order,
                lambda o: o.get("status") in {"confirmed", "rejected"},
                timeout=120,
                interval=0.5,
                what="the order decided",
            )
            assert confirmed["status"] == "confirmed", confirmed

        # back to one of each: `up` stops the second instances and leaves the first running
        script("up", {**env, "LEADLINE_SCALE": "1"})
        extras = [name for name, _ in instances if name[-2:] == "-2"]
        assert not [name for name in extras if pid_running(pids[name])]
        status = script("status", {**env, "LEADLINE_SCALE": "1"})
        assert not [name for name in extras if f"{name} " in status], status
        assert status.count(" running ") == len(SERVICES), status
    finally:
        script("down", env, timeout=120)
    assert not list((run / "pids").glob("*.pid"))
    still = [name for name, pid in pids.items() if pid_running(pid)]
    assert not still, f"left running after down: {still}"
