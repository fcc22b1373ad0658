"""Throw-away Kafka and PostgreSQL for tests that stop, kill and restart them.

The shared broker and database serve every other test, so a fault test gets its own, started by
the project's own `deploy/local/infra.sh` (the same script as `make up`) in a run dir of its own
on free loopback ports; the Kafka jar cache is shared. Every call blocks until the script is
done: call them through `asyncio.to_thread` while a load runs on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.kafka.security import KafkaSecurity
from tests.support.processes import free_port, free_ports

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "deploy/local/infra.sh"

# Kafka's own defaults wait 9 s before fencing a dead broker (and shrinking it out of every
# ISR), and 30 s before dropping a lagging follower: acks=all writes stall that long.
FAST_FAILOVER = (
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=5000",
)


def _infra(env: dict[str, str], *command: str, check: bool = True) -> None:
    subprocess.run(["bash", str(INFRA), *command], env=env, check=check, timeout=240)


def pid_running(pid: int) -> bool:
    """Alive and not a zombie (a killed process lingers as one until PID 1 reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def is_kafka_jvm(pid: int) -> bool:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return argv[0].endswith(b"java") and b"kafka.Kafka" in argv


class OwnKafka:
    """A throw-away Kafka (1 or 3 KRaft nodes) via infra.sh in its own run dir, on free ports;
    `secure`: the secured profile (SASL_SSL, SCRAM principals, ACLs), as `make up SECURE=1`."""

    def __init__(self, run_dir: Path, nodes: int = 1, *, secure: bool = False) -> None:
        if nodes not in (1, 3):
            raise ValueError(f"infra.sh runs 1 or 3 Kafka nodes, not {nodes}")
        self.run_dir = run_dir
        self.nodes = nodes
        self.secure = secure
        ports = free_ports(2 * nodes)
        self.ports, self.controller_ports = ports[:nodes], ports[nodes:]
        self._env = {
            **os.environ,
            "LEADLINE_RUN_DIR": str(run_dir),
            "KAFKA_NODES": str(nodes),
            "KAFKA_PORTS": " ".join(map(str, self.ports)),
            "KAFKA_CONTROLLER_PORTS": " ".join(map(str, self.controller_ports)),
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m",
            "KAFKA_EXTRA_PROPERTIES": "\n".join(FAST_FAILOVER),
            "LEADLINE_SECURE": "1" if secure else "0",
        }

    @property
    def bootstrap(self) -> str:
        """Every node's host:port, comma-separated."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def env(self) -> dict[str, str]:
        """What a service started against this Kafka needs (as infra.sh writes to kafka.env);
        secured, each service adds its own `credentials(principal)`."""
        replicas, min_isr = (3, 2) if self.nodes == 3 else (1, 1)
        secured = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SSL_CAFILE": str(self.cafile)}
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_REPLICATION_FACTOR": str(replicas),
            "KAFKA_MIN_INSYNC_REPLICAS": str(min_isr),
            **(secured if self.secure else {}),
        }

    @property
    def _secrets(self) -> Path:
        return self.run_dir / ("kafka-secure" if self.nodes == 1 else "kafka-secure-cluster")

    @property
    def cafile(self) -> Path:
        """The throw-away CA the secured brokers' certificate chains to."""
        return self._secrets / "tls" / "ca.pem"

    def password(self, principal: str) -> str:
        """A secured principal's password (admin, or one infra.sh made with the ACLs)."""
        return (self._secrets / "credentials" / principal).read_text().strip()

    def credentials(self, principal: str) -> dict[str, str]:
        """The environment that makes a process connect as `principal`."""
        return {"KAFKA_SASL_USERNAME": principal, "KAFKA_SASL_PASSWORD": self.password(principal)}

    def security(self, principal: str, password: str | None = None) -> KafkaSecurity:
        """Client options for `principal` (with its own password unless given another)."""
        return KafkaSecurity(
            "SASL_SSL",
            username=principal,
            password=self.password(principal) if password is None else password,
            cafile=str(self.cafile),
        )

    def address(self, node: int = 0) -> str:
        return f"127.0.0.1:{self.ports[node]}"

    def pid(self, node: int = 0) -> int:
        name = "kafka.pid" if self.nodes == 1 else f"kafka-{node + 1}.pid"
        return int((self.run_dir / "pids" / name).read_text())

    def up(self) -> None:
        """Start every node; return once the cluster's metadata names each as a live broker."""
        _infra(self._env, "kafka-up")

    def down(self) -> None:
        """Stop every node cleanly (SIGTERM, wait for exit); the data stays for `up`."""
        _infra(self._env, "kafka-down")

    def kill(self, node: int = 0) -> None:
        """SIGKILL one node (0-based); return once its process is gone and its port closed."""
        _infra(self._env, "kafka-node-kill", str(self._node(node)))

    def start(self, node: int = 0) -> None:
        """Start that node again; return once it listens and the cluster names every node."""
        _infra(self._env, "kafka-node-up", str(self._node(node)))

    def remove(self) -> None:
        """Stop every node and delete its data; safe to call twice."""
        if self.run_dir.exists():
            # SIGKILL: the data goes anyway, and a node left without a controller quorum
            # would wait 30 s for a clean shutdown that cannot happen
            for node in range(1, self.nodes + 1):
                _infra(self._env, "kafka-node-kill", str(node), check=False)
            _infra(self._env, "kafka-down", check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _node(self, node: int) -> int:
        if not 0 <= node < self.nodes:
            raise IndexError(f"node {node} of a {self.nodes}-node Kafka (0-based)")
        return node + 1


class OwnPostgres:
    """A throw-away PostgreSQL cluster via infra.sh pg-up in its own run dir, on a free port."""

    def __init__(self, run_dir: Path, databases: Sequence[str]) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self._env = {
            **os.environ,
            "LEADLINE_RUN_DIR": str(run_dir),
            "PG_PORT": str(self.port),
            "LEADLINE_DATABASES": " ".join(databases),
        }
        self._cleared = False

    def up(self) -> None:
        """Start (initialising on first use) and create the databases that are missing."""
        if not self._cleared:
            # infra.sh may keep the cluster outside the run dir (pg_datadir), in a folder named
            # after the run dir's path: a run killed before `remove()` left one there, and the
            # next run at the same path (pytest's --basetemp) would start on its data (seen:
            # 157 orders of an earlier run in a fresh fault run's checkout database)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._clear()
            self._cleared = True
        _infra(self._env, "pg-up")

    def dsn(self, database: str) -> str:
        return f"postgresql://leadline:leadline@127.0.0.1:{self.port}/{database}"

    def crash(self) -> None:
        """Stop as a crash would: `pg_ctl stop -m immediate`, no checkpoint, recovery at `up`."""
        _infra(self._env, "pg-crash")

    def down(self) -> None:
        """A clean stop (`pg_ctl stop -m fast`)."""
        _infra(self._env, "pg-down")

    def remove(self) -> None:
        """Stop and delete the cluster's data; safe to call twice."""
        if not self.run_dir.exists():
            return
        self._clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _clear(self) -> None:
        """Stop the run dir's cluster (a stale one too) and delete its data, wherever infra.sh
        keeps it (`pg-down` finds it, and writes the hint that says where)."""
        _infra(self._env, "pg-down", check=False)
        hint = self.run_dir / "pids" / "postgres.dir"
        if hint.exists():  # the data may live outside run_dir (see infra.sh pg_datadir)
            data = Path(hint.read_text().strip())
            shutil.rmtree(data, ignore_errors=True)
            if data.parent.name.startswith("leadline-"):  # the folder infra.sh made for it
                with contextlib.suppress(OSError):
                    data.parent.rmdir()
            hint.unlink()  # the next pg-up makes the folder again, owned by postgres


async def topic_overrides(bootstrap: str, topic: str) -> dict[str, str]:
    """The configs set on `topic` itself (not the broker's defaults it inherits)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
    finally:
        await admin.close()
    (resource,) = response.to_object()["resources"]
    topic_config = 1  # DescribeConfigs' config_source for a topic's own (dynamic) config
    return {
        entry["config_names"]: entry["config_value"]
        for entry in resource["config_entries"]
        if entry["config_source"] == topic_config
    }


async def _partitions(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions: list[dict[str, Any]] = described["partitions"]
    return partitions


async def replicas(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """Each partition's replica node ids."""
    return {p["partition"]: sorted(p["replicas"]) for p in await _partitions(bootstrap, topic)}


async def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's leader node id (-1: none)."""
    return {p["partition"]: p["leader"] for p in await _partitions(bootstrap, topic)}
