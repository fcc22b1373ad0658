"""`POST /orders` throughput and latency next to a trivial FastAPI route, same run, same machine.

Both are served by uvicorn in their own process on loopback, with the same logging setup; one
httpx client drives each with the same bounded concurrency and request count. Checkout runs
whole (pool, relay publishing to Kafka, idle consumer) on a fresh database and its own topics.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import asyncpg
import httpx
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI

from bench.report import Figure, print_figures
from services.checkout.catalogue import SEED
from shared.auth import AuthSettings, mint_token
from shared.kafka.admin import catalogue_specs, ensure_topics
from shared.observability.logging import configure_logging

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
POSTGRES = os.environ.get("POSTGRES_DSN", "postgresql://leadline:leadline@127.0.0.1:5433/postgres")
CONCURRENCY = int(os.environ.get("BENCH_HTTP_CONCURRENCY", "16"))
REQUESTS = int(os.environ.get("BENCH_HTTP_REQUESTS", "2000"))
WARMUP = 100
SECRET = "bench-http-secret-that-is-long-enough-for-hs256"


def ping_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def process(args: list[str], env: dict[str, str]) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready within 60 s")
            await asyncio.sleep(0.2)


Call = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def drive(base_url: str, call: Call, expected: int) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms) for REQUESTS calls, CONCURRENCY in flight."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        for i in range(WARMUP):
            assert (await call(client, -i - 1)).status_code == expected
        counter = itertools.count()
        latencies: list[float] = []

        async def worker() -> None:
            while (i := next(counter)) < REQUESTS:
                started = time.perf_counter()
                response = await call(client, i)
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == expected, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return REQUESTS / (time.perf_counter() - started), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench() -> list[Figure]:
    database, prefix = f"bench_http_{uuid.uuid4().hex[:10]}", f"bench{uuid.uuid4().hex[:8]}."
    admin = await asyncpg.connect(POSTGRES)
    topics = await ensure_topics(BOOTSTRAP, catalogue_specs(prefix))
    checkout_port, ping_port = free_port(), free_port()
    token = mint_token(AuthSettings(jwt_secret=SECRET), "bench-customer")
    headers = {"Authorization": f"Bearer {token}"}
    skus = [p.sku for p in SEED]

    async def place(client: httpx.AsyncClient, i: int) -> httpx.Response:
        lines = [{"sku": sku, "quantity": random.randint(1, 5)} for sku in random.sample(skus, 2)]
        key = {"Idempotency-Key": f"bench-{i}-{uuid.uuid4().hex}"}
        return await client.post("/orders", json={"lines": lines}, headers=headers | key)

    async def ping(client: httpx.AsyncClient, _: int) -> httpx.Response:
        return await client.get("/ping")

    await admin.execute(f'CREATE DATABASE "{database}"')
    env = {
        "CHECKOUT_HTTP_PORT": str(checkout_port),
        "CHECKOUT_DATABASE_URL": POSTGRES.rpartition("/")[0] + "/" + database,
        "CHECKOUT_CONSUMER_GROUP": f"{prefix}checkout",
        "LEADLINE_TOPIC_PREFIX": prefix,
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "AUTH_JWT_SECRET": SECRET,
    }
    try:
        with (
            process(["-m", "services.checkout"], env),
            process(["-m", "bench.bench_http", "serve-ping", str(ping_port)], {}),
        ):
            checkout_url, ping_url = (f"http://127.0.0.1:{p}" for p in (checkout_port, ping_port))
            await wait_ready(checkout_url + "/health/ready")
            await wait_ready(ping_url + "/ping")
            ping_rps, ping_ms = await drive(ping_url, ping, 200)
            orders_rps, orders_ms = await drive(checkout_url, place, 201)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        kafka = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await kafka.start()
        try:
            await kafka.delete_topics(topics)
        finally:
            await kafka.close()
    baseline = "GET /ping (trivial FastAPI)"
    return [
        Figure("POST /orders", orders_rps, "req/s", baseline, ping_rps),
        *(
            Figure(
                f"POST /orders p{int(q * 100)}",
                percentile(orders_ms, q),
                "ms",
                f"{baseline} p{int(q * 100)}",
                percentile(ping_ms, q),
                higher_is_better=False,
            )
            for q in (0.50, 0.99)
        ),
    ]


def main() -> None:
    if sys.argv[1:2] == ["serve-ping"]:
        configure_logging("bench-ping", "INFO")  # the same logging cost as checkout's
        uvicorn.run(ping_app(), host="127.0.0.1", port=int(sys.argv[2]), log_config=None)
        return
    figures = asyncio.run(bench())
    print_figures(
        f"HTTP: {REQUESTS} requests, {CONCURRENCY} in flight, uvicorn on loopback", figures
    )


if __name__ == "__main__":
    main()
