"""What an operator sees when something is wrong: one line on stderr naming it, and an exit
status a script can test (1 not found, 2 usage, 3 unreachable). Real Kafka and PostgreSQL
where something must be looked up; a port nothing listens on where it must be unreachable."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest
from typer.testing import CliRunner

from services.cli.__main__ import app
from services.orchestrator.store import SCHEMA as SAGA_VIEW
from tests.cli.running import leadline
from tests.conftest import Infra
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

RUNNER = CliRunner()


def invoke(*args: str, **env: str) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def nowhere() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    "args",
    [
        ["topics"],
        ["events", "tail", "checkout.events", "--no-follow"],
        ["dlq", "list"],
        ["dlq", "show", "checkout.events.dlq:0:0"],
        ["trace", "some-order"],
    ],
)
def test_an_unreachable_broker_is_one_line_and_exit_3(args: list[str]) -> None:
    broker = nowhere()
    code, out, err = invoke(*args, KAFKA_BOOTSTRAP_SERVERS=broker)

    assert code == 3
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"leadline: Kafka unreachable at {broker}: KafkaConnectionError")


async def test_the_console_script_says_it_in_one_line_too() -> None:
    broker = nowhere()
    ran = await leadline("topics", env={"KAFKA_BOOTSTRAP_SERVERS": broker})

    assert ran.code == 3
    assert ran.out == ""
    # aiokafka's own connection errors are not printed: the CLI's line is all there is
    assert ran.err.splitlines() == [
        f"leadline: Kafka unreachable at {broker}: KafkaConnectionError: Unable to bootstrap"
        f" from [('127.0.0.1', {broker.rpartition(':')[2]}, <AddressFamily.AF_INET: 2>)]"
    ]


def test_a_broker_without_our_topics_is_said_in_one_line(infra: Infra) -> None:
    # aiokafka's consumer, started and stopped with nothing to read, raised CancelledError
    prefix = f"empty-{uuid.uuid4().hex[:8]}."
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "LEADLINE_TOPIC_PREFIX": prefix}
    for args in (["topics"], ["topics", "--all"]):
        code, out, err = invoke(*args, **env)

        assert (code, out) == (1, ""), err
        assert err.splitlines() == [
            f"leadline: no Leadline topics on {infra.kafka_bootstrap} under the prefix"
            f" {prefix!r}: `make up` (or `python -m shared.kafka.admin ensure-topics`) creates them"
        ]


def test_an_unknown_order_has_no_trace(infra: Infra, catalogue_prefix: str) -> None:
    order_id = str(uuid.uuid4())
    code, out, err = invoke(
        "trace",
        order_id,
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap,
        LEADLINE_TOPIC_PREFIX=catalogue_prefix,
    )

    assert (code, out) == (1, "")
    assert err.splitlines() == [f"leadline: no records of order {order_id!r} on any topic"]


async def test_an_unknown_order_has_no_saga(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(SAGA_VIEW)
    finally:
        await conn.close()
    order_id = str(uuid.uuid4())

    ran = await leadline("saga", "show", order_id, env={"ORCHESTRATOR_DATABASE_URL": pg_dsn})

    assert (ran.code, ran.out) == (1, "")
    assert ran.err.splitlines() == [f"leadline: no saga for order {order_id!r}"]
    listed = await leadline("saga", "list", "--json", env={"ORCHESTRATOR_DATABASE_URL": pg_dsn})
    assert listed.json() == {"counts": {}, "sagas": []}


async def test_a_database_without_the_saga_view_is_named_as_such(pg_dsn: str) -> None:
    ran = await leadline("saga", "list", env={"ORCHESTRATOR_DATABASE_URL": pg_dsn})

    assert ran.code == 1
    assert ran.err.splitlines() == [
        "leadline: no saga view in that database: is ORCHESTRATOR_DATABASE_URL the orchestrator's?"
    ]


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    dsn = f"postgresql://leadline:secret@{nowhere()}/orchestrator"
    code, _, err = invoke("saga", "list", ORCHESTRATOR_DATABASE_URL=dsn)

    assert code == 3
    [line] = err.splitlines()
    assert line.startswith("leadline: PostgreSQL unreachable at postgresql://leadline:***@")
    assert "secret" not in line


def test_an_unknown_topic_is_named(infra: Infra, catalogue_prefix: str) -> None:
    code, _, err = invoke(
        "events",
        "tail",
        "checkout.evnets",
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap,
        LEADLINE_TOPIC_PREFIX=catalogue_prefix,
    )

    assert code == 1
    assert err.splitlines() == [
        f"leadline: no topic {catalogue_prefix}checkout.evnets on the broker"
        f" at {infra.kafka_bootstrap}"
    ]


def test_a_dead_letter_that_is_not_there_and_one_that_cannot_be(
    infra: Infra, catalogue_prefix: str
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "LEADLINE_TOPIC_PREFIX": catalogue_prefix,
    }

    code, _, err = invoke("dlq", "show", "checkout.events.dlq:0:5", **env)
    assert code == 1
    assert err.splitlines() == [
        "leadline: no dead letter checkout.events.dlq:0:5 (never written, or past its retention)"
    ]
    code, _, err = invoke("dlq", "show", "checkout.events:0:5", **env)
    assert code == 2
    assert "is not a dead letter id" in err
    code, _, err = invoke("dlq", "redrive", **env)
    assert code == 2
    assert err.splitlines() == [
        "leadline: name dead letters by id, or choose them with --topic/--reason/--since/--until"
    ]
    code, out, err = invoke("dlq", "list", "--json", **env)
    assert (code, json.loads(out)) == (0, {"dead_letters": []})


def test_status_with_nothing_reachable_reports_every_part_down() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": nowhere(), "LEADLINE_TIMEOUT": "2"}
    for name in ("CHECKOUT", "INVENTORY", "RECEIPTS", "PROJECTION", "ORCHESTRATOR", "SIMULATOR"):
        env[f"{name}_HTTP_PORT"] = str(free_port())
        env[f"{name}_DATABASE_URL"] = f"postgresql://leadline:leadline@{nowhere()}/x"

    code, out, _ = invoke("status", "--json", **env)

    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert len(report["parts"]) == 13
    assert {p["state"] for p in report["parts"]} == {"down"}


def test_settings_the_environment_got_wrong_are_one_line_and_exit_2() -> None:
    code, _, err = invoke("topics", KAFKA_BOOTSTRAP_SERVERS="no-port-here")

    assert code == 2
    assert err.splitlines() == [
        "leadline: refusing to start: KAFKA_BOOTSTRAP_SERVERS: Value error,"
        " 'no-port-here' is not host:port"
    ]
