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
from pathlib import Path

from services.orchestrator.settings import OrchestratorSettings


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
