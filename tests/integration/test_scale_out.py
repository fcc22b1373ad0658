"""Two instances of a service on one database and one consumer group: what the second one does
at start-up must not break the first one running, nor the second one's start.

- Start-up DDL meets live traffic: `install_schema` locks the backbone's tables one after the
  other while the running instance's transactions take them in their own order (inbox claim,
  then outbox). The start-up must neither fail on the deadlock nor win it against the traffic.
- The orchestrator's local table state (RocksDB) belongs to one process: a second worker
  pointed at the same data directory is refused at start, with a message naming the setting,
  instead of fighting over partition locks with the first.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.inventory.store import SCHEMA as INVENTORY_SCHEMA
from services.orchestrator.bootstrap import runtime
from services.orchestrator.datadir import (
    DataDirInUseError,
    DataDirLock,
    forget_another_clusters_state,
)
from services.orchestrator.processor import Processor
from services.orchestrator.settings import OrchestratorSettings
from shared.postgres import install_schema
from shared.runtime import ServiceRuntime
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


async def waiting_locks(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT relation::regclass::text AS rel FROM pg_locks"
        " WHERE NOT granted AND relation IS NOT NULL"
    )
    return [r["rel"] for r in rows]


async def test_installing_the_schema_under_live_traffic_neither_fails_nor_aborts_the_traffic(
    pg_pool: asyncpg.Pool, pg_dsn: str
) -> None:
    await install_schema(pg_pool, INVENTORY_SCHEMA)  # the first instance, running
    live = await asyncpg.connect(pg_dsn)
    try:
        # the first instance's consumer: inbox claim first, its outbox row next
        tx = live.transaction()
        await tx.start()
        await live.execute(
            "INSERT INTO inbox (consumer, event_id) VALUES ('inventory', $1)", uuid.uuid4()
        )
        second = asyncio.create_task(install_schema(pg_pool, INVENTORY_SCHEMA))
        # the second instance's DDL now holds the outbox and waits for the inbox
        waiting: list[str] = await eventually(
            lambda: waiting_locks(pg_pool), lambda rels: "inbox" in rels, what="DDL waiting"
        )
        assert "inbox" in waiting
        await live.execute(
            "INSERT INTO outbox (topic, key, event_id, value, headers)"
            " VALUES ('t', 'k', $1, '\\x00', '[]')",
            uuid.uuid4(),
        )
        await tx.commit()  # the live transaction is never the deadlock's victim
        await asyncio.wait_for(second, timeout=30)  # and the start-up gets through after it
    finally:
        await live.close()
    assert await pg_pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_two_start_ups_installing_at_once_both_succeed(pg_dsn: str) -> None:
    pools = [await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2) for _ in range(2)]
    try:
        await asyncio.gather(*(install_schema(p, INVENTORY_SCHEMA) for p in pools))
        assert await pools[0].fetchval("SELECT to_regclass('stock') IS NOT NULL")
    finally:
        for pool in pools:
            await pool.close()


def orchestrator_settings(
    data_dir: Path,
    app_id: str,
    *,
    dsn: str = "postgresql://leadline:leadline@127.0.0.1:5433/orchestrator",
    kafka: str = "127.0.0.1:9092",
    prefix: str = "",
) -> OrchestratorSettings:
    return OrchestratorSettings(
        data_dir=data_dir,
        app_id=app_id,
        database_url=dsn,
        kafka_bootstrap_servers=kafka,
        topic_prefix=prefix,
    )


async def test_a_second_orchestrator_on_the_same_data_dir_is_refused_at_start(
    pg_dsn: str, kafka_bootstrap: str, catalogue_prefix: str, tmp_path: Path
) -> None:
    app_id = unique("orchestrator")

    def worker(data_dir: Path) -> ServiceRuntime:
        return runtime(
            orchestrator_settings(
                data_dir, app_id, dsn=pg_dsn, kafka=kafka_bootstrap, prefix=catalogue_prefix
            )
        )

    first = worker(tmp_path / "state")
    async with first.running():
        with pytest.raises(DataDirInUseError, match="ORCHESTRATOR_DATA_DIR"):
            await worker(tmp_path / "state").start()
        # the refused start touched nothing of the first worker's: it recovers and serves
        processor = first.workers["processor"]
        assert isinstance(processor, Processor)
        await eventually(processor.ready, bool, timeout=90, what="first worker ready")
        assert first.workers["data_dir"].is_alive()


def test_the_data_dir_lock_is_per_directory_and_released_on_stop(tmp_path: Path) -> None:
    app_id = unique("orchestrator")
    first = DataDirLock(orchestrator_settings(tmp_path / "state", app_id))
    try:
        with pytest.raises(DataDirInUseError):
            DataDirLock(orchestrator_settings(tmp_path / "state", app_id))
        DataDirLock(orchestrator_settings(tmp_path / "other", app_id)).release()
    finally:
        first.release()
    DataDirLock(orchestrator_settings(tmp_path / "state", app_id)).release()


async def test_local_state_read_from_another_kafka_cluster_is_deleted_before_faust_opens_it(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """Seen on `make up BROKERS=3` after a single node: faust's recovery crashed on offsets
    beyond the new cluster's changelog (ConsistencyError) and the worker never became ready."""
    settings = orchestrator_settings(tmp_path, unique("orchestrator"), kafka=kafka_bootstrap)
    state = tmp_path / settings.faust_id
    (state / "v1" / "tables").mkdir(parents=True)
    marker = tmp_path / f"{settings.faust_id}.cluster"
    marker.write_text("a-cluster-long-gone\n")

    assert await forget_another_clusters_state(settings)
    assert not state.exists()
    this_cluster = marker.read_text().strip()
    assert this_cluster not in ("", "a-cluster-long-gone")

    # state read from this cluster is kept
    (state / "v1").mkdir(parents=True)
    assert not await forget_another_clusters_state(settings)
    assert (state / "v1").is_dir()
    # state that says nowhere which cluster it came from is not trusted
    marker.unlink()
    assert await forget_another_clusters_state(settings)
    assert not state.exists()
    assert marker.read_text().strip() == this_cluster
