"""Service processes run for real (`python -m services.<name>`, or a simulator), and plain
Kafka produce/read of envelopes."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.envelope import Envelope
from shared.kafka.admin import catalogue_specs, ensure_topics
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]


# Ports handed out in this process: never twice, whatever the kernel says is free meanwhile.
_HANDED_OUT: set[int] = set()
# Below the kernel's ephemeral range (32768+ here): an outgoing connection (to Kafka, to
# PostgreSQL) takes its local port from that range, so a listening port picked there can be
# taken by some client between the pick and the service's bind ("address already in use").
_LISTEN_RANGE = (20000, 32000)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nothing listens on, outside the ephemeral range, none handed out
    before in this process. Picked at random, so two test processes rarely meet."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(*_LISTEN_RANGE) if not low <= p <= high and p not in _HANDED_OUT]
    random.SystemRandom().shuffle(candidates)  # not the global one, which tests may seed
    picked = [p for p in candidates[: count * 20] if _bindable(p)][:count]
    if len(picked) < count:
        raise RuntimeError(f"no {count} free ports in {_LISTEN_RANGE}")
    _HANDED_OUT.update(picked)
    return picked


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class ServiceProcess:
    """One `python -m <package>.<module>` process (`services.<module>` unless told otherwise);
    its output goes to `log`. `env_prefix` names its settings' prefix when it is not the
    module's name in capitals (the simulator: `simulators.payment_provider`, `SIMULATOR_`)."""

    module: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = None
    package: str = "services"
    env_prefix: str | None = None

    def start(self) -> None:
        prefix = self.env_prefix or self.module.upper()
        # local unless the test says otherwise: the dev JWT secret is refused anywhere else
        env = {
            **os.environ,
            "LEADLINE_ENV": "local",
            **self.env,
            f"{prefix}_HTTP_PORT": str(self.port),
        }
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"{self.package}.{self.module}"],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def ready(self, timeout: float = 60.0) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def probe() -> int:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.module} exited:\n{self.tail()}")
                try:
                    response = await client.get(f"http://127.0.0.1:{self.port}/health/ready")
                except httpx.TransportError:
                    return 0
                return response.status_code

            await eventually(probe, lambda s: s == 200, timeout=timeout, what="ready")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close()

    def stop(self) -> int | None:
        """SIGTERM, as an orchestrator stops a service; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            self._close()
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close()
        return self.proc.returncode

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def produce(bootstrap: str, topic: str, envelopes: Sequence[Envelope]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, e.to_bytes(), key=e.key.encode(), headers=e.headers())
            for e in envelopes
        ]
        for future in sent:
            await future
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[Envelope]:
    """Every committed record now on `topic`, from the beginning (no consumer group)."""
    return [Envelope.from_bytes(r.value) for r in await read_records(bootstrap, topic)]


async def read_records(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record now on `topic` as it is (garbage too), from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found.extend(records)
        return found
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def catalogue_copy(bootstrap: str, label: str = "t") -> AsyncIterator[str]:
    """A fresh copy of every catalogue topic under a unique prefix (yielded), for running whole
    services with `LEADLINE_TOPIC_PREFIX` set to it. Every topic under the prefix is deleted
    afterwards, those the services made themselves too (dead letters, the orchestrator's)."""
    prefix = f"{label}{uuid.uuid4().hex[:10]}."
    await ensure_topics(bootstrap, catalogue_specs(prefix))
    try:
        yield prefix
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(
                [t for t in await admin.list_topics() if t.startswith(prefix)]
            )
        finally:
            await admin.close()
