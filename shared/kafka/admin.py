"""Topic creation from the catalogue and broker readiness, as a small CLI and as functions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.catalogue import TOPICS

cli = typer.Typer(add_completion=False, help="Kafka admin helpers for Leadline.")


async def wait_for_broker(bootstrap: str, timeout: float) -> None:
    """Return once the broker answers a metadata request; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refused connects are expected here
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"kafka at {bootstrap} did not answer within {timeout}s: {last!r}")


async def ensure_topics(bootstrap: str, specs: list[tuple[str, int, dict[str, str]]]) -> list[str]:
    """Create each (name, partitions, config) topic that does not exist yet; return those made."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1, topic_configs=config)
            for name, partitions, config in specs
            if name not in existing
        ]
        if missing:
            # another process may create them between list and create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            await _wait_for_leaders(admin, [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        await admin.close()


async def partitions(bootstrap: str, names: list[str]) -> dict[str, list[int]]:
    """Each topic's partition numbers; KeyError names a topic the broker does not have."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    found = {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described}
    missing = [n for n in names if not found.get(n)]
    if missing:
        raise KeyError(f"no such topic on the broker: {', '.join(missing)}")
    return found


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0
) -> None:
    # CreateTopics answers before every partition has a leader in the broker's metadata; a
    # consumer subscribing in that window is assigned nothing until its next metadata refresh.
    deadline = time.monotonic() + timeout
    while True:
        described = await admin.describe_topics(names)
        if all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout}s: {names}")
        await asyncio.sleep(0.1)


def catalogue_specs(prefix: str = "") -> list[tuple[str, int, dict[str, str]]]:
    """Every catalogue topic and its dead-letter topic; `prefix` namespaces a whole set (tests
    give each system under test its own, so runs never read each other's records)."""
    specs: list[tuple[str, int, dict[str, str]]] = []
    for t in TOPICS:
        specs.append((prefix + t.name, t.partitions, {"cleanup.policy": t.cleanup_policy}))
        specs.append((prefix + t.dead_letter, 1, {"cleanup.policy": "delete"}))
    return specs


@cli.command("wait")
def wait_cmd(bootstrap: str = "127.0.0.1:9092", timeout: float = 60.0) -> None:
    """Wait until the broker answers metadata requests."""
    asyncio.run(wait_for_broker(bootstrap, timeout))


@cli.command("ensure-topics")
def ensure_topics_cmd(bootstrap: str = "127.0.0.1:9092", prefix: str = "") -> None:
    """Create every catalogue topic (and its dead-letter topic) that is missing."""
    made = asyncio.run(ensure_topics(bootstrap, catalogue_specs(prefix)))
    typer.echo(f"topics created: {', '.join(made) if made else 'none (all exist)'}")


if __name__ == "__main__":
    cli()
