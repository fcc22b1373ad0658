"""The whole order flow as real processes (checkout, inventory, receipts, the payment-provider
simulator and the orchestrator), each on a database of its own, for the saga's integration,
crash and end-to-end tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.auth import AuthSettings, mint_token
from tests.support import eventually
from tests.support.processes import ServiceProcess

SECRET = "saga-flow-" + uuid.uuid4().hex
AUTH = AuthSettings(jwt_secret=SECRET)
DATABASES = ("checkout", "inventory", "receipts", "simulator", "orchestrator", "projection")
# the services that consume in a group of their own and may run as several instances
SCALABLE = ("checkout", "inventory", "receipts", "orchestrator", "projection")
PAY_TIMEOUT = 6.0


@contextlib.asynccontextmanager
async def databases(maintenance_dsn: str) -> AsyncIterator[dict[str, str]]:
    """A fresh database per process, dropped afterwards."""
    base = maintenance_dsn.rpartition("/")[0]
    names = {s: f"saga_{s}_{uuid.uuid4().hex[:10]}" for s in DATABASES}
    admin = await asyncpg.connect(maintenance_dsn)
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield {s: f"{base}/{n}" for s, n in names.items()}
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class System:
    def __init__(self, procs: dict[str, ServiceProcess], tmp: Path) -> None:
        self.procs = procs
        self.mailbox = tmp / "mailbox"
        self.data_dir = tmp / "orchestrator"
        # idle connections dropped before uvicorn's 5 s keep-alive closes them from its side:
        # a request on a connection the server closes at that very moment fails with ReadError
        # (seen: a GET 5.0 s after the previous request to the simulator)
        self.http = httpx.AsyncClient(timeout=10, limits=httpx.Limits(keepalive_expiry=2.0))

    def url(self, service: str, path: str) -> str:
        """`service` names an instance: `checkout` is the first, `checkout-2` the second."""
        return f"http://127.0.0.1:{self.procs[service].port}{path}"

    def instances(self, service: str) -> list[str]:
        """The names of `service`'s instances, first one first."""
        return [n for n in self.procs if n == service or n.startswith(f"{service}-")]

    async def place(self, customer: str, lines: list[dict[str, Any]]) -> str:
        response = await self.http.post(
            self.url("checkout", "/orders"), json={"lines": lines}, headers=bearer(customer)
        )
        assert response.status_code == 201, response.text
        order_id: str = response.json()["order_id"]
        return order_id

    async def saga(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(
            self.url("orchestrator", f"/sagas/{order_id}"), headers=bearer("ops", "admin")
        )
        return response.json() if response.status_code == 200 else {"status": None}

    async def ends(self, order_id: str, timeout: float = 60.0) -> dict[str, Any]:
        terminal = {"completed", "rejected", "cancelled", "failed"}
        return await eventually(
            lambda: self.saga(order_id),
            lambda s: s["status"] in terminal,
            timeout=timeout,
            what=f"saga of {order_id} ended",
        )

    async def order(self, order_id: str, customer: str) -> dict[str, Any]:
        response = await self.http.get(
            self.url("checkout", f"/orders/{order_id}"), headers=bearer(customer)
        )
        body: dict[str, Any] = response.json()
        return body

    async def stock(self, sku: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get(self.url("inventory", f"/stock/{sku}"))).json()
        return body

    async def payment(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(
            self.url("simulator", f"/payments/{order_id}"), headers=bearer("ops", "admin")
        )
        body: dict[str, Any] = response.json()
        return body


def bearer(subject: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(AUTH, subject, scopes)}"}


@contextlib.asynccontextmanager
async def running_system(
    databases: Mapping[str, str],
    catalogue_prefix: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    *,
    with_projection: bool = False,
    instances: int = 1,
    own_env: Callable[[str], Mapping[str, str]] | None = None,
    **extra_env: str,
) -> AsyncIterator[System]:
    """Every process started and ready (the read side when asked); stopped (SIGTERM) on exit.
    With `instances` > 1 each scalable service runs that many times, in one consumer group on
    one database: the second is `<name>-2` (the orchestrator's on a state folder of its own).
    `own_env(service)` adds to one service's environment (`simulator` names the simulator),
    e.g. the Kafka principal it connects as."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
        "AUTH_JWT_SECRET": SECRET,
        "RECEIPTS_MAILBOX_DIR": str(tmp_path / "mailbox"),
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "orchestrator"),
        "ORCHESTRATOR_PAY_TIMEOUT": str(PAY_TIMEOUT),
        **{f"{s.upper()}_DATABASE_URL": dsn for s, dsn in databases.items()},
        **extra_env,
    }

    def env_of(service: str) -> dict[str, str]:
        return {**env, **(own_env(service) if own_env is not None else {})}

    names = [s for s in SCALABLE if with_projection or s != "projection"]
    procs = {s: ServiceProcess(s, env_of(s), tmp_path / f"{s}.log") for s in names}
    for k in range(2, instances + 1):
        for s in names:
            own = {**env_of(s), "ORCHESTRATOR_DATA_DIR": str(tmp_path / f"orchestrator-{k}")}
            procs[f"{s}-{k}"] = ServiceProcess(s, own, tmp_path / f"{s}-{k}.log")
    procs["simulator"] = ServiceProcess(
        "payment_provider",
        env_of("simulator"),
        tmp_path / "simulator.log",
        package="simulators",
        env_prefix="SIMULATOR",
    )
    made = System(procs, tmp_path)
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            await proc.ready(timeout=90)
        yield made
    finally:
        await made.http.aclose()
        for proc in procs.values():
            proc.stop()


# each process of the system and the Kafka principal it connects as on the secured profile
# (deploy/local/services.sh: the simulator plays the upstream provider)
PRINCIPAL_OF = {
    "checkout": "checkout",
    "inventory": "inventory",
    "receipts": "receipts",
    "projection": "projection",
    "orchestrator": "orchestrator",
    "simulator": "payment-provider",
}
