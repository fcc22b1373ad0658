"""Rows Kafka refuses for good are parked and hold back only their own topic and key (issue 8),
on real PostgreSQL and real Kafka; the operator's CLI run as the process an operator runs."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
)
from fastapi import FastAPI
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from shared.envelope import Envelope
from shared.http.health import HealthChecks, health_router
from shared.kafka.admin import ensure_topics
from shared.postgres import install_schema
from shared.postgres.outbox import prune_outbox
from shared.postgres.uow import PostgresUnitOfWork
from shared.relay import OutboxRelay
from shared.relay.batch import refusal
from shared.relay.parking import count_parked, drop_parked
from shared.runtime import ServiceRuntime, lifespan
from tests.conftest import ROOT, TopicFactory
from tests.integration.consumer_helpers import delete_topics
from tests.integration.test_relay import (  # noqa: F401  (fixtures)
    ReaderFactory,
    Start,
    distinct,
    envelopes,
    expected_order,
    first_occurrences,
    reader_for,
    start,
)
from tests.support import eventually, unique
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

Rows = dict[uuid.UUID, asyncpg.Record]


@pytest.fixture
async def late_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A topic name no topic has yet; deleted afterwards if the test created it."""
    name = f"parking.late.{uuid.uuid4().hex[:12]}"
    yield name
    await delete_topics(kafka_bootstrap, [name])


def padded(env: Envelope, size: int) -> Envelope:
    """Another message of the same key whose payload is `size` bytes long."""
    return env.model_copy(update={"event_id": uuid.uuid4(), "payload": {"x": "x" * size}})


async def append_in_order(pool: asyncpg.Pool, rows: Sequence[tuple[str, Envelope]]) -> None:
    async with PostgresUnitOfWork(pool) as uow:
        for topic, env in rows:
            await uow.outbox.append(topic, env)


async def outbox(pool: asyncpg.Pool) -> Rows:
    rows = await pool.fetch(
        "SELECT id, event_id, sent_at, parked_at, parked_reason, dropped_at FROM outbox"
    )
    return {r["event_id"]: r for r in rows}


def parked_ids(rows: Rows) -> set[uuid.UUID]:
    return {e for e, r in rows.items() if r["parked_at"] is not None and r["dropped_at"] is None}


def held(row: asyncpg.Record) -> bool:
    return row["sent_at"] is None and row["parked_at"] is None


def gauge(name: str, relay: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"relay": relay})


async def relay_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`python -m shared.relay …` as an operator runs it: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "shared.relay", *args),
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_refused_rows_are_parked_and_hold_back_only_their_own_topic_and_key(
    pg_pool: asyncpg.Pool,
    pg_dsn: str,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    late_topic: str,
    reader_for: ReaderFactory,  # noqa: F811
    start: Start,  # noqa: F811
) -> None:
    await install_schema(pg_pool)
    topic, elsewhere = await new_topic("parking", partitions=3), await new_topic("parking")
    good = envelopes([unique("order") for _ in range(3)], 3)
    big, big_next, big_elsewhere = envelopes([unique("big")], 3)
    big = padded(big, 2**21)  # over the producer's 1 MB max_request_size
    lost, lost_next = envelopes([unique("lost")], 2)  # for a topic that does not exist yet
    await append_in_order(
        pg_pool,
        [(topic, e) for e in good[:3]]
        + [(topic, big), (late_topic, lost)]
        + [(topic, e) for e in good[3:6]]
        + [(topic, big_next), (late_topic, lost_next), (elsewhere, big_elsewhere)]
        + [(topic, e) for e in good[6:]],
    )
    name = unique("relay")
    # a 30 s poll: every pass after the first is woken by a NOTIFY (an append or the CLI)
    relay = OutboxRelay(
        pool=pg_pool,
        bootstrap_servers=kafka_bootstrap,
        name=name,
        poll_interval=30,
        missing_topic_grace=0,
    )
    await start(relay)

    reader = await reader_for(topic)
    received = await eventually(reader.poll, distinct(len(good)), what="the other keys' rows")
    assert first_occurrences(received) == expected_order(good)
    # the same key on another topic is another stream: not held back
    other = await eventually((await reader_for(elsewhere)).poll, distinct(1))
    assert [e.event_id for e in other] == [big_elsewhere.event_id]
    rows = await eventually(
        lambda: outbox(pg_pool),
        lambda rows: parked_ids(rows) == {big.event_id, lost.event_id},
        what="both refused rows parked",
    )
    assert rows[big.event_id]["parked_reason"].startswith(
        "MessageSizeTooLargeError: The message is"
    )
    assert f"topic {late_topic!r} does not exist" in rows[lost.event_id]["parked_reason"]
    assert held(rows[big_next.event_id])
    assert held(rows[lost_next.event_id])
    assert all(rows[e.event_id]["sent_at"] is not None for e in good)

    # a pass after the parking still leaves the held row alone
    later = envelopes([good[0].key], 1)
    await append_in_order(pg_pool, [(topic, later[0])])
    received = await eventually(reader.poll, distinct(len(good) + 1), what="a later row")
    assert big_next.event_id not in {e.event_id for e in received}
    await eventually(lambda: relay.published, lambda n: n == len(good) + 2, what="rows marked")
    # the backlog counts the held rows, not the parked ones
    await eventually(
        lambda: (gauge("leadline_outbox_parked", name), gauge("leadline_outbox_backlog", name)),
        lambda parked_and_backlog: parked_and_backlog == (2, 2),
        what="gauges",
    )
    assert (await relay.check_parked() or "").startswith("2 outbox rows are parked")

    big_id = rows[big.event_id]["id"]
    assert await relay_cli("parked", "drop", "--id", str(big_id), "--dsn", pg_dsn) == (
        0,
        f"dropped: {big_id}\n",
        "",
    )
    received = await eventually(reader.poll, distinct(len(good) + 2), what="held row after drop")
    assert first_occurrences(received)[big_next.key] == [str(big_next.event_id)]
    rows = await outbox(pg_pool)
    assert rows[big.event_id]["dropped_at"] is not None
    assert rows[big.event_id]["sent_at"] is None

    await ensure_topics(kafka_bootstrap, [(late_topic, 1, {})])  # the cause, fixed
    lost_id = rows[lost.event_id]["id"]
    code, out, err = await relay_cli("parked", "retry", "--id", str(lost_id), "--dsn", pg_dsn)
    assert (code, out) == (0, f"retried: {lost_id}\n"), err
    late = await eventually((await reader_for(late_topic)).poll, distinct(2), what="retried rows")
    assert [e.event_id for e in late] == [lost.event_id, lost_next.event_id]
    await eventually(lambda: gauge("leadline_outbox_parked", name), lambda n: n == 0)
    assert await relay.check_parked() is None
    await eventually(
        lambda: outbox(pg_pool),
        lambda rows: all(r["sent_at"] for e, r in rows.items() if e != big.event_id),
        what="every row but the dropped one marked",
    )


async def test_a_batch_the_broker_refuses_for_its_size_parks_only_a_row_refused_alone(
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
    late_topic: str,
    reader_for: ReaderFactory,  # noqa: F811
    start: Start,  # noqa: F811
) -> None:
    """Records of one partition go to the broker as one batch; a topic's max.message.bytes
    refuses the whole batch, which names only its first record. That record is tried alone
    before it is judged; only one the broker refuses on its own is parked."""
    await install_schema(pg_pool)
    await ensure_topics(kafka_bootstrap, [(late_topic, 1, {"max.message.bytes": "20000"})])
    small = [padded(e, 4000) for e in envelopes([unique("order") for _ in range(4)], 3)]
    huge, behind = envelopes([unique("huge")], 2)
    huge = padded(huge, 50_000)
    await append_in_order(
        pg_pool, [(late_topic, e) for e in [*small[:6], huge, *small[6:], behind]]
    )
    relay = OutboxRelay(
        pool=pg_pool, bootstrap_servers=kafka_bootstrap, name=unique("relay"), poll_interval=30
    )
    await start(relay)

    reader = await reader_for(late_topic)
    received = await eventually(reader.poll, distinct(len(small)), what="every small row")
    assert first_occurrences(received) == expected_order(small)
    rows = await eventually(
        lambda: outbox(pg_pool),
        lambda rows: all(rows[e.event_id]["sent_at"] for e in small) and parked_ids(rows),
    )
    assert parked_ids(rows) == {huge.event_id}
    assert rows[huge.event_id]["parked_reason"] == (
        "MessageSizeTooLargeError: answered by the broker"
    )
    assert held(rows[behind.event_id])


async def test_a_topic_created_within_the_grace_is_waited_for_not_parked(
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    late_topic: str,
    reader_for: ReaderFactory,  # noqa: F811
    start: Start,  # noqa: F811
) -> None:
    await install_schema(pg_pool)
    topic = await new_topic("parking")
    first, second = envelopes([unique("order")], 2)
    early = envelopes([unique("early")], 1)[0]
    await append_in_order(pg_pool, [(late_topic, early), (topic, first)])
    relay = OutboxRelay(
        pool=pg_pool,
        bootstrap_servers=kafka_bootstrap,
        name=unique("relay"),
        poll_interval=0.2,
        missing_topic_grace=60,
    )
    await start(relay)
    reader = await reader_for(topic)
    await eventually(reader.poll, distinct(1), what="the row behind the early one")
    await append_in_order(pg_pool, [(topic, second)])
    await eventually(reader.poll, distinct(2), what="a later pass")
    rows = await outbox(pg_pool)
    assert held(rows[early.event_id])

    await ensure_topics(kafka_bootstrap, [(late_topic, 1, {})])
    late = await eventually((await reader_for(late_topic)).poll, distinct(1), what="late topic")
    assert [e.event_id for e in late] == [early.event_id]
    rows = await eventually(lambda: outbox(pg_pool), lambda r: r[early.event_id]["sent_at"])
    assert not any(r["parked_at"] for r in rows.values())


async def test_a_relay_that_cannot_reach_kafka_retries_and_parks_nothing(
    pg_pool: asyncpg.Pool,
    late_topic: str,
    start: Start,  # noqa: F811
) -> None:
    await install_schema(pg_pool)
    big, ok = envelopes([unique("order")], 2)
    await append_in_order(pg_pool, [(late_topic, padded(big, 2**21)), (late_topic, ok)])
    relay = OutboxRelay(
        pool=pg_pool,
        bootstrap_servers=f"127.0.0.1:{free_port()}",  # nothing listens there
        name=unique("relay"),
        poll_interval=0.2,
        missing_topic_grace=0,
    )
    with capture_logs() as logs:
        await start(relay)
        await eventually(
            lambda: [e for e in logs if e["event"] == "relay pass failed"],
            lambda failed: len(failed) >= 2,
            what="two failed passes",
        )
    assert relay.is_alive()
    assert await count_parked(pg_pool) == 0
    assert all(held(r) for r in (await outbox(pg_pool)).values())


@pytest.mark.parametrize(
    "cause",
    [
        UnknownTopicOrPartitionError(),  # what the producer says when metadata never came
        KafkaConnectionError(),
        KafkaTimeoutError(),
        RequestTimedOutError(),
        NotLeaderForPartitionError(),
        TimeoutError("record unacknowledged after 30.0s"),
        OSError("connection reset"),
    ],
)
def test_an_answer_retrying_may_change_never_parks(cause: BaseException) -> None:
    assert refusal(cause) is None


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (MessageSizeTooLargeError("The message is 2 MB"), "MessageSizeTooLargeError: The message"),
        (MessageSizeTooLargeError(), "MessageSizeTooLargeError: answered by the broker"),
        (RecordListTooLargeError(), "RecordListTooLargeError: answered by the broker"),
        (InvalidTopicError(), "InvalidTopicError: answered by the broker"),
    ],
)
def test_an_answer_retrying_cannot_change_parks_with_its_reason(
    cause: BaseException, reason: str
) -> None:
    assert (refusal(cause) or "").startswith(reason)


async def test_readiness_notes_a_parked_row_and_says_what_to_do(
    pg_dsn: str, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("parking")
    runtime = ServiceRuntime(
        name=unique("rt"), database_url=pg_dsn, bootstrap_servers=kafka_bootstrap
    )
    ready, live = HealthChecks(), HealthChecks()
    runtime.add_health_checks(ready, live)
    app = FastAPI(lifespan=lifespan(runtime))
    app.include_router(health_router(ready, live=live))

    async def readiness(client: httpx.AsyncClient) -> tuple[int, Any]:
        response = await client.get("/health/ready")
        return response.status_code, response.json()

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rt") as client:
            await eventually(lambda: readiness(client), lambda r: r[0] == 200, what="ready")
            big = padded(envelopes([unique("big")], 1)[0], 2**21)
            await append_in_order(app.state.pool, [(topic, big)])
            status, body = await eventually(
                lambda: readiness(client),
                lambda r: "note" in r[1]["checks"]["outbox_parked"],
                what="parked row reported",
            )
            # the instance still serves every other key: a note, not a failure
            assert status == 200
            assert body["checks"]["outbox_parked"] == {
                "ok": True,
                "note": "1 outbox row is parked (Kafka refused them for good);"
                " see `python -m shared.relay parked list`",
            }
            [row_id] = await app.state.pool.fetch("SELECT id FROM outbox")
            assert await drop_parked(app.state.pool, [row_id["id"]]) == [row_id["id"]]
            await eventually(
                lambda: readiness(client),
                lambda r: "note" not in r[1]["checks"]["outbox_parked"],
                what="the note gone",
            )


async def test_the_cli_lists_retries_and_drops_parked_rows(
    pg_pool: asyncpg.Pool, pg_dsn: str
) -> None:
    await install_schema(pg_pool)
    a0, a1 = envelopes(["a"], 2)
    b0, c0 = envelopes(["b"], 1)[0], envelopes(["c"], 1)[0]
    await append_in_order(pg_pool, [("t", e) for e in (a0, a1, b0, c0)])
    ids = {event_id: r["id"] for event_id, r in (await outbox(pg_pool)).items()}
    await pg_pool.execute(
        "UPDATE outbox SET parked_at = now(), parked_reason = 'refused: ' || id"
        " WHERE id = ANY($1::bigint[])",
        [ids[a0.event_id], ids[b0.event_id], ids[c0.event_id]],
    )
    dsn = ("--dsn", pg_dsn)

    code, out, err = await relay_cli("parked", "list", *dsn)
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split("\t") == ["id", "topic", "key", "bytes", "held", "parked_at", "reason"]
    listed = {int(fields[0]): fields for fields in (line.split("\t") for line in lines)}
    assert sorted(listed) == sorted([ids[a0.event_id], ids[b0.event_id], ids[c0.event_id]])
    a0_line = listed[ids[a0.event_id]]
    assert (a0_line[1], a0_line[2], a0_line[4]) == ("t", "a", "1")  # a1 is held behind it
    assert a0_line[6] == f"refused: {ids[a0.event_id]}"

    code, out, err = await relay_cli("parked", "drop", "--id", str(ids[a1.event_id]), *dsn)
    assert (code, out) == (1, "dropped: none\n")
    assert f"not parked: {ids[a1.event_id]}" in err
    code, _, err = await relay_cli("parked", "retry", *dsn)
    assert code == 2
    assert "--all" in err
    code, _, err = await relay_cli()  # running a relay still needs its database
    assert code == 2
    assert "--dsn" in err

    assert await relay_cli("parked", "drop", "--id", str(ids[a0.event_id]), *dsn) == (
        0,
        f"dropped: {ids[a0.event_id]}\n",
        "",
    )
    retried = await relay_cli(
        "parked", "retry", "--id", str(ids[b0.event_id]), env={"RELAY_DATABASE_URL": pg_dsn}
    )
    assert retried == (0, f"retried: {ids[b0.event_id]}\n", "")
    code, out, _ = await relay_cli("parked", "list", *dsn)
    assert [int(line.split("\t")[0]) for line in out.splitlines()[1:]] == [ids[c0.event_id]]

    # housekeeping prunes the dropped row like a sent one, never the parked or unsent ones
    assert await prune_outbox(pg_pool, timedelta(0)) == 1
    assert set(await outbox(pg_pool)) == {a1.event_id, b0.event_id, c0.event_id}

    assert await relay_cli("parked", "retry", "--all", *dsn) == (
        0,
        f"retried: {ids[c0.event_id]}\n",
        "",
    )
    assert await relay_cli("parked", "list", *dsn) == (0, "no parked rows\n", "")
    assert all(held(r) for r in (await outbox(pg_pool)).values())
