"""Stopping and restarting the broker loses no acknowledged record.

The shared broker on 9092 serves everyone else's tests, so this one starts its own real broker
with `infra.sh kafka-up` (own run folder, own ports; the jar cache is shared), restarts it, and
throws it away afterwards, even when the test fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support import eventually, unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "deploy/local/infra.sh"
KEYS = [f"order-{i}".encode() for i in range(5)]
PER_KEY = 40


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed process lingers as one until PID 1 reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


@dataclass(frozen=True)
class OwnBroker:
    run_dir: Path
    env: dict[str, str]
    bootstrap: str

    @property
    def pid(self) -> int:
        return int((self.run_dir / "pids/kafka.pid").read_text())

    def infra(self, command: str) -> None:
        subprocess.run(["bash", str(INFRA), command], env=self.env, check=True, timeout=180)

    def is_kafka_jvm(self, pid: int) -> bool:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return argv[0].endswith(b"java") and b"kafka.Kafka" in argv


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    run_dir = tmp_path_factory.mktemp("own-broker")
    kafka_port, controller_port = _free_ports(2)
    env = {
        **os.environ,
        "LEADLINE_RUN_DIR": str(run_dir),
        "KAFKA_PORT": str(kafka_port),
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m",
        # After a kill the restarted node cannot register until its previous incarnation's
        # session expires (9 s by default): keep that short on this throw-away broker.
        "KAFKA_EXTRA_PROPERTIES": "\n".join(
            ["broker.session.timeout.ms=3000", "broker.heartbeat.interval.ms=500"]
        ),
    }
    broker = OwnBroker(run_dir, env, f"127.0.0.1:{kafka_port}")
    try:
        broker.infra("kafka-up")
        yield broker
    finally:
        subprocess.run(["bash", str(INFRA), "kafka-down"], env=env, check=False, timeout=120)
        shutil.rmtree(run_dir, ignore_errors=True)


async def _send_round(
    producer: AIOKafkaProducer, topic: str, round_: int
) -> dict[bytes, list[bytes]]:
    """Send PER_KEY records per key; return them once every one is acknowledged."""
    acked: dict[bytes, list[bytes]] = defaultdict(list)
    futures = []
    for seq in range(PER_KEY):
        for key in KEYS:
            value = b"%s:%d:%d" % (key, round_, seq)
            futures.append(await producer.send(topic, value, key=key))
            acked[key].append(value)
    await asyncio.gather(*futures)
    return acked


async def _stop_and_restart(broker: OwnBroker, how: str) -> None:
    old = broker.pid
    if how == "SIGTERM":
        await asyncio.to_thread(broker.infra, "kafka-down")  # clean stop: TERM, wait for exit
    else:
        os.kill(old, signal.SIGKILL)

        async def running() -> bool:
            # the thread-group leader turns zombie before the JVM's last threads have closed
            # its sockets: wait for the port too, or kafka-up finds it "taken"
            return _running(old) or _listening(broker.bootstrap)

        await eventually(running, lambda alive: not alive, what=f"kafka pid {old} gone")
    assert not _running(old)
    await asyncio.to_thread(broker.infra, "kafka-up")
    assert broker.pid != old
    assert broker.is_kafka_jvm(broker.pid)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_broker_restart_loses_no_acknowledged_record(own_broker: OwnBroker, how: str) -> None:
    topic = unique("restart")
    admin = AIOKafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=own_broker.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        before = await _send_round(producer, topic, 0)
        await _stop_and_restart(own_broker, how)
        # the same idempotent producer carries on against the restarted broker
        after = await _send_round(producer, topic, 1)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=own_broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    received: dict[bytes, list[bytes]] = defaultdict(list)
    total = 2 * PER_KEY * len(KEYS)

    async def poll() -> int:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                received[record.key].append(record.value)
        return sum(map(len, received.values()))

    try:
        await eventually(poll, lambda n: n >= total, timeout=60, what="every acknowledged record")
    finally:
        await consumer.stop()
    # every acknowledged record exactly once, each key's records in the order they were sent
    assert received == {key: before[key] + after[key] for key in KEYS}
