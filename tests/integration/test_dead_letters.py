"""Dead letters on real Kafka and PostgreSQL: listed, re-driven once the cause is fixed, and
re-driven at most once per tracking group (issue 3 item 9)."""

from __future__ import annotations

import asyncio
import sys
import uuid

import asyncpg
import pytest
from prometheus_client import REGISTRY

from schemas.registry import REGISTRY as MESSAGES
from shared.kafka.dead_letters import dead_letter_topic, list_dead_letters, redrive
from shared.postgres import install_schema
from tests.conftest import ROOT, TopicFactory
from tests.integration.consumer_helpers import (
    Recorder,
    applied,
    confirmed,
    produce,
    raw,
    read_all,
    runner_for,
    running,
    settled,
    topic,
)
from tests.integration.procs.counting_consumer import DDL
from tests.support import eventually, unique

__all__ = ["topic"]  # the fixture

pytestmark = pytest.mark.integration


async def test_redrive_puts_a_dead_letter_back_and_it_is_processed_once_fixed(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic("redrive")
    dlq = dead_letter_topic(t)
    refused, good = confirmed(unique("order")), confirmed(unique("order"))
    handler, name = Recorder(), unique("consumer")
    handler.refuse.add(refused.event_id)
    await produce(kafka_bootstrap, t, [raw(refused), raw(good)])

    async with running(runner_for(name, kafka_bootstrap, t, handler, pg_pool)):
        await settled(kafka_bootstrap, name, {0: 2})
        assert [r["event_id"] for r in await applied(pg_pool)] == [good.event_id]
        assert [d.event_id for d in await list_dead_letters(kafka_bootstrap, dlq)] == [
            str(refused.event_id)
        ]
        handler.refuse.clear()  # the cause is fixed

        assert await redrive(kafka_bootstrap, dlq) == 1
        await settled(kafka_bootstrap, name, {0: 3})
        assert await redrive(kafka_bootstrap, dlq) == 0  # tracked: never sent twice

    rows = await applied(pg_pool)
    assert [(r["event_id"], r["times"]) for r in rows] == [
        (good.event_id, 1),
        (refused.event_id, 1),
    ]
    assert handler.calls[refused.event_id] == 2
    back = (await read_all(kafka_bootstrap, t))[2]  # the original, as it was first produced
    assert (back.key, back.value, list(back.headers)) == raw(refused)
    assert len(await list_dead_letters(kafka_bootstrap, dlq)) == 1  # dead letters stay


async def test_redrive_filters_by_reason_and_tracks_per_group(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic("redrive")
    dlq = dead_letter_topic(t)
    refused = confirmed(unique("order"))
    handler, name = Recorder(), unique("consumer")
    handler.refuse.add(refused.event_id)
    await produce(kafka_bootstrap, t, [(b"k", b"not json", []), raw(refused)])
    async with running(runner_for(name, kafka_bootstrap, t, handler, pg_pool)):
        await settled(kafka_bootstrap, name, {0: 2})
    letters = await eventually(
        lambda: list_dead_letters(kafka_bootstrap, dlq), lambda d: len(d) == 2, what="letters"
    )
    assert [d.reason for d in letters] == ["invalid-envelope", "rejected"]

    cli = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "shared.kafka.dead_letters", "list", dlq),
        "--bootstrap",
        kafka_bootstrap,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    listing = (await cli.communicate())[0].decode()
    assert cli.returncode == 0
    assert [line.split()[1] for line in listing.splitlines()] == ["invalid-envelope", "rejected"]

    assert await redrive(kafka_bootstrap, dlq, reason="rejected") == 1
    assert [r.value for r in (await read_all(kafka_bootstrap, t))[2:]] == [refused.to_bytes()]
    # passed over by that group: another group name considers it again
    assert await redrive(kafka_bootstrap, dlq, reason="invalid-envelope") == 0
    other = unique("redrive")
    assert await redrive(kafka_bootstrap, dlq, reason="invalid-envelope", group=other) == 1
    assert [r.value for r in (await read_all(kafka_bootstrap, t))[2:]] == [
        refused.to_bytes(),
        b"not json",
    ]


async def test_tombstones_and_unknown_types_are_dead_lettered_and_label_no_metric(
    pg_pool: asyncpg.Pool, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    await install_schema(pg_pool, DDL)
    t = await topic("foreign")
    dlq = dead_letter_topic(t)
    good = confirmed(unique("order"))
    typo = good.model_copy(update={"event_id": uuid.uuid4(), "type": "OrderConfirmd"})
    made_up = [
        (b"k", good.model_copy(update={"type": f"Made{i}" + "x" * 90}).to_bytes(), [])
        for i in range(50)
    ]
    records = [(b"k", None, []), raw(typo), *made_up, raw(good)]
    await produce(kafka_bootstrap, t, records)
    name = unique("consumer")

    async with running(runner_for(name, kafka_bootstrap, t, Recorder(), pg_pool)):
        await settled(kafka_bootstrap, name, {0: len(records)})

    assert [r["event_id"] for r in await applied(pg_pool)] == [good.event_id]
    letters = await eventually(
        lambda: list_dead_letters(kafka_bootstrap, dlq), lambda d: len(d) == 52, what="letters"
    )
    assert [d.reason for d in letters] == ["invalid-envelope"] + ["unknown-type"] * 51
    assert letters[0].value is None  # a tombstone stays a tombstone
    assert "OrderConfirmd" in letters[1].error
    # nothing a foreign producer made up became a label value (each would be a series for good)
    for metric in ("leadline_messages_handled", "leadline_messages_failed"):
        made = _label_values(metric, "type")
        assert {v for v in made if not MESSAGES.knows(v)} <= {"unknown"}, metric

    assert await redrive(kafka_bootstrap, dlq, reason="invalid-envelope") == 1
    back = (await read_all(kafka_bootstrap, t))[len(records)]
    assert (back.key, back.value) == (b"k", None)  # re-driven as it came: still null


def _label_values(metric: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in REGISTRY.collect()
        if family.name == metric
        for sample in family.samples
        if label in sample.labels
    }
