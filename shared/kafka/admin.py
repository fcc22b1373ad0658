"""Topic creation from the catalogue and broker readiness, as a small CLI and as functions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Annotated

import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)

from schemas.catalogue import TOPICS
from shared.kafka.security import PLAINTEXT, KafkaSecurity
from shared.observability.logging import get_logger
from shared.settings import CommonSettings

log = get_logger(__name__)
cli = typer.Typer(add_completion=False, help="Kafka admin helpers for Leadline.")


async def wait_for_broker(
    bootstrap: str,
    timeout: float,
    brokers: int = 1,
    node: int | None = None,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Return once the cluster answers a metadata request naming at least `brokers` live
    brokers, `node` (an id) among them if given: a fenced or stopped broker is not named.
    TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refused connects are expected here
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=5000, **security.aiokafka()
        )
        try:
            await admin.start()
            await admin.list_topics()
            live = sorted(b["node_id"] for b in (await admin.describe_cluster())["brokers"])
            if len(live) >= brokers and (node is None or node in live):
                return
            last = f"live brokers {live}"
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"kafka at {bootstrap} did not answer within {timeout}s: {last!r}")


async def ensure_topics(
    bootstrap: str,
    specs: list[tuple[str, int, dict[str, str]]],
    *,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    security: KafkaSecurity = PLAINTEXT,
    request_timeout_ms: int = 40_000,
) -> list[str]:
    """Create each (name, partitions, config) topic that does not exist yet, with
    `replication_factor` replicas and `min.insync.replicas` (unless its config names one);
    return those made. A topic that exists already is left as it is: one with another
    replication factor is logged, never reassigned."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms, **security.aiokafka()
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        isr = {"min.insync.replicas": str(min_insync_replicas)}
        missing = [
            NewTopic(name, partitions, replication_factor, topic_configs={**isr, **config})
            for name, partitions, config in specs
            if name not in existing
        ]
        if missing:
            # another process may create them between list and create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            await _wait_for_leaders(admin, [t.name for t in missing])
        present = [name for name, _, _ in specs if name in existing]
        if present:
            await _warn_on_replication(admin, present, replication_factor)
        return [t.name for t in missing]
    finally:
        await admin.close()


# what a broker that is starting, or a connection that hangs, looks like to an admin client
_UNANSWERED = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    asyncio.TimeoutError,
)


async def ensure_topics_patiently(
    bootstrap: str,
    specs: list[tuple[str, int, dict[str, str]]],
    *,
    timeout: float,
    request_timeout_ms: int = 10_000,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """`ensure_topics`, tried again while Kafka does not answer (each try gives up on a silent
    connection after `request_timeout_ms`), for `timeout` s; then its last error. For one-shots
    that run beside a starting broker (compose's `topics`): creating only what is missing, a
    try never undoes an earlier one (whose topics it reports as existing, not made)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await ensure_topics(
                bootstrap,
                specs,
                replication_factor=replication_factor,
                min_insync_replicas=min_insync_replicas,
                security=security,
                request_timeout_ms=request_timeout_ms,
            )
        except _UNANSWERED as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("kafka did not answer; trying again", bootstrap=bootstrap, error=repr(exc))
            await asyncio.sleep(1.0)


async def _warn_on_replication(
    admin: AIOKafkaAdminClient, names: list[str], replication_factor: int
) -> None:
    # A topic made before the cluster grew keeps its replicas: acks=all then protects less than
    # the settings promise. Reassignment is an operator's decision, so say so and carry on.
    for topic in await admin.describe_topics(names):
        actual = {len(p["replicas"]) for p in topic["partitions"]}
        if topic["error_code"] == 0 and actual and actual != {replication_factor}:
            log.warning(
                f"topic {topic['topic']} exists with another replication factor",
                topic=topic["topic"],
                replication_factor=sorted(actual),
                asked=replication_factor,
            )


async def partitions(
    bootstrap: str, names: list[str], *, security: KafkaSecurity = PLAINTEXT
) -> dict[str, list[int]]:
    """Each topic's partition numbers; KeyError names a topic the broker does not have (or
    will not describe to this principal)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.aiokafka())
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


def security_from_env() -> KafkaSecurity:
    """KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_CAFILE as every service reads them
    (infra.sh runs these commands as the admin principal on a secured broker)."""
    return CommonSettings().kafka_security


@cli.command("wait")
def wait_cmd(
    bootstrap: str = "127.0.0.1:9092",
    timeout: float = 60.0,
    brokers: int = 1,
    node: Annotated[int | None, typer.Option(help="a node id that must be live")] = None,
) -> None:
    """Wait until the cluster answers metadata requests naming `brokers` live brokers."""
    asyncio.run(wait_for_broker(bootstrap, timeout, brokers, node, security=security_from_env()))


@cli.command("ensure-topics")
def ensure_topics_cmd(
    bootstrap: str = "127.0.0.1:9092",
    prefix: str = "",
    replication_factor: Annotated[
        int, typer.Option(envvar="KAFKA_REPLICATION_FACTOR", min=1, max=5)
    ] = 1,
    min_insync_replicas: Annotated[
        int, typer.Option(envvar="KAFKA_MIN_INSYNC_REPLICAS", min=1, max=5)
    ] = 1,
    timeout: Annotated[
        float, typer.Option(min=0, help="seconds to keep trying while Kafka does not answer")
    ] = 120.0,
) -> None:
    """Create every catalogue topic (and its dead-letter topic) that is missing."""
    if min_insync_replicas > replication_factor:
        raise typer.BadParameter(
            f"--min-insync-replicas {min_insync_replicas} exceeds "
            f"--replication-factor {replication_factor}"
        )
    made = asyncio.run(
        ensure_topics_patiently(
            bootstrap,
            catalogue_specs(prefix),
            timeout=timeout,
            replication_factor=replication_factor,
            min_insync_replicas=min_insync_replicas,
            security=security_from_env(),
        )
    )
    typer.echo(f"topics created: {', '.join(made) if made else 'none (all exist)'}")


if __name__ == "__main__":
    cli()
