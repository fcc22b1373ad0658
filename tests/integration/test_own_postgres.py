"""The throw-away PostgreSQL of the fault tests starts empty, also where a killed run left one.

infra.sh may keep a cluster outside its run dir, in a folder named after the run dir's path, so
a run killed before its clean-up leaves a cluster (running, even) that the next run at the same
path would have started on: a fault run once found 157 orders of an earlier run in its fresh
checkout database and failed every count.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from tests.support.infra import OwnPostgres

pytestmark = pytest.mark.integration


async def test_a_cluster_left_behind_at_the_same_path_is_not_reused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    killed = OwnPostgres(run_dir, ["checkout"])
    killed.up()
    conn = await asyncpg.connect(killed.dsn("checkout"))
    try:
        await conn.execute("CREATE TABLE leftover (n int); INSERT INTO leftover VALUES (1)")
    finally:
        await conn.close()
    # the run is killed: nothing stops its cluster; the next run's tmp dir is made afresh
    shutil.rmtree(run_dir)

    fresh = OwnPostgres(run_dir, ["checkout"])
    try:
        fresh.up()
        conn = await asyncpg.connect(fresh.dsn("checkout"))
        try:
            assert await conn.fetchval("SELECT to_regclass('leftover') IS NULL")
        finally:
            await conn.close()
    finally:
        fresh.remove()
    with pytest.raises(ConnectionRefusedError):  # the one left behind was stopped
        await asyncpg.connect(killed.dsn("checkout"), timeout=5)
