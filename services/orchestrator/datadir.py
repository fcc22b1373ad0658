"""One worker per local state directory.

faust keeps the saga table in RocksDB under `ORCHESTRATOR_DATA_DIR`, one database per
partition, and standby replicas open the partitions other workers own. Two workers on one
directory therefore open the same RocksDB files: RocksDB's own lock makes one of them fail or
stall mid-rebalance, long after start-up. So each worker takes an exclusive `flock` on the
directory first and refuses to start without it. The kernel drops the lock with the process, so
a killed worker leaves nothing stale behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from services.orchestrator.settings import OrchestratorSettings
from shared.observability.logging import get_logger

log = get_logger(__name__)


class DataDirInUseError(RuntimeError):
    """Another process runs a worker on this state directory."""


class DataDirLock:
    """Held from construction until release() (a ServiceRuntime worker: stop() releases)."""

    def __init__(self, settings: OrchestratorSettings) -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.path: Path = settings.data_dir / f"{settings.faust_id}.lock"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise DataDirInUseError(
                f"{settings.data_dir} is in use by another orchestrator worker of"
                f" {settings.faust_id!r}: give each worker its own ORCHESTRATOR_DATA_DIR"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())  # for whoever wonders who holds it
        self._stopping = asyncio.Event()

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    async def run(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        self._stopping.set()
        self.release()

    def is_alive(self) -> bool:
        return self._fd is not None


async def forget_another_clusters_state(settings: OrchestratorSettings) -> bool:
    """The local table state is a cache of the changelog on one Kafka cluster. Pointed at
    another cluster (a dev broker recreated, `make up BROKERS=3` after a single node), faust
    finds offsets beyond the new changelog's end and its recovery crashes (ConsistencyError),
    leaving the worker alive but never ready. So the state records the cluster id it was read
    from, and state from another cluster is deleted before faust opens it: it is rebuilt from
    the changelog as after a wiped volume; so is state that recorded no cluster. Returns True
    when something was deleted."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_security.aiokafka()
    )
    await admin.start()
    try:
        cluster_id = str((await admin.describe_cluster())["cluster_id"])
    finally:
        await admin.close()
    state = settings.data_dir / settings.faust_id
    marker = settings.data_dir / f"{settings.faust_id}.cluster"
    recorded = marker.read_text().strip() if marker.exists() else None
    # state that recorded no cluster (made before this check) may be from any: a cache, so
    # rebuilding it costs a recovery, while trusting a wrong one costs a worker that never starts
    forgotten = recorded != cluster_id and state.exists()
    if forgotten:
        log.warning(
            "local saga state is from another Kafka cluster: deleted, rebuilt from the changelog",
            state=str(state),
            recorded_cluster=recorded,
            cluster=cluster_id,
        )
        shutil.rmtree(state)
    marker.write_text(cluster_id + "\n")
    return forgotten
