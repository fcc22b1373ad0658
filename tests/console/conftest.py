"""One seeded world for the console tests, and `leadline console` serving it as a process of its
own, as an operator starts it; one headless Chromium for them all.

The world is made, not run (a whole system is far heavier than what the console reads): per
module, a fresh saga view and outbox databases next to the test server's maintenance database,
and three catalogue topics under a prefix no other test uses, so the console, pointed at that
prefix, sees exactly these.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr
from selenium import webdriver

from shared.auth import AuthSettings, mint_token
from shared.kafka.admin import ensure_topics
from tests.conftest import Infra
from tests.console import seed
from tests.console.browser import chromium
from tests.support import eventually, unique
from tests.support.processes import free_port

LEADLINE = Path(sys.executable).parent / "leadline"


@dataclass(frozen=True)
class World:
    url: str  # the console
    bootstrap: str
    prefix: str
    sagas: seed.Sagas
    group: str  # lags by LAG on warehouse.events
    poison: seed.Poison  # dead-lettered from inventory.commands
    admin_token: str
    customer_token: str  # valid, without the admin scope
    forged_token: str  # admin scope, signed with another secret


LAG = 3


def _database(dsn: str, name: str) -> str:
    return f"{dsn.rpartition('/')[0]}/{name}"


@contextlib.asynccontextmanager
async def databases(dsn: str, *labels: str) -> AsyncIterator[dict[str, str]]:
    """A fresh database per label (its URL by label), dropped afterwards."""
    names = {label: f"t_console_{label}_{uuid.uuid4().hex[:10]}" for label in labels}
    admin = await asyncpg.connect(dsn)
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield {label: _database(dsn, name) for label, name in names.items()}
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def topics(bootstrap: str, names: list[str]) -> AsyncIterator[None]:
    await ensure_topics(bootstrap, [(n, 1, {}) for n in names])
    try:
        yield
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(names)
        finally:
            await admin.close()


@contextlib.contextmanager
def console_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """`leadline console` on a free port; its URL. Always ended (SIGTERM, then SIGKILL)."""
    assert LEADLINE.exists(), f"{LEADLINE} missing: pip install -e '.[dev]' installs it"
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(LEADLINE), "console", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _answers(url: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            return (await client.get(f"{url}/login")).status_code
        except httpx.TransportError:
            return 0


@pytest.fixture(scope="module")
async def world(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    bootstrap = infra.kafka_bootstrap
    prefix = unique("console") + "."
    names = [prefix + t for t in ("warehouse.events", "inventory.commands")]
    async with (
        databases(infra.postgres_dsn, "orchestrator", "checkout", "inventory") as dbs,
        topics(bootstrap, [*names, prefix + "inventory.commands.dlq"]),
    ):
        sagas = await seed.seed_sagas(dbs["orchestrator"])
        await seed.seed_outbox(dbs["checkout"], pending=3, sent=2, parked=1, dropped=1)
        await seed.seed_outbox(dbs["inventory"], pending=0, sent=1, parked=2, dropped=0)
        group = unique("console-lag")
        await seed.lagging_group(bootstrap, names[0], group, records=LAG + 2, read=2)
        poison = await seed.dead_letter(bootstrap, prefix, "inventory.commands")

        secret = secrets.token_hex(32)
        auth = AuthSettings(jwt_secret=SecretStr(secret))
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LEADLINE_TOPIC_PREFIX": prefix,
            "AUTH_JWT_SECRET": secret,
            "ORCHESTRATOR_DATABASE_URL": dbs["orchestrator"],
            "CHECKOUT_DATABASE_URL": dbs["checkout"],
            "INVENTORY_DATABASE_URL": dbs["inventory"],
            # a database that is not there: the overview says so and still renders
            "RECEIPTS_DATABASE_URL": _database(infra.postgres_dsn, f"t_absent_{uuid.uuid4().hex}"),
            # databases without an outbox
            "PROJECTION_DATABASE_URL": dbs["orchestrator"],
            "SIMULATOR_DATABASE_URL": dbs["orchestrator"],
        }
        env.pop("LEADLINE_ENV", None)  # a real secret: the console must not need `local`
        log = tmp_path_factory.mktemp("console") / "console.log"
        with console_process(env, log) as url:
            await eventually(
                lambda: _answers(url),
                lambda status: status == 200,
                timeout=60,
                what=f"the console answering (log: {log})",
            )
            yield World(
                url=url,
                bootstrap=bootstrap,
                prefix=prefix,
                sagas=sagas,
                group=group,
                poison=poison,
                admin_token=mint_token(auth, "operator-1", ["admin"]),
                customer_token=mint_token(auth, "alice"),
                forged_token=mint_token(
                    AuthSettings(jwt_secret=SecretStr(secrets.token_hex(32))), "mallory", ["admin"]
                ),
            )


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver
