"""The secured Kafka profile on a real broker, started as `make up SECURE=1` starts it
(`infra.sh kafka-up` with LEADLINE_SECURE=1) in a run dir of its own on free ports: clients only
over SASL_SSL with SCRAM-SHA-512, one principal per party, deny-by-default ACLs generated from
the topic catalogue (shared/kafka/acls.py), applied here for this module's topic prefix.

What a refusal looks like is checked next to what is let in, so that a broker that is merely
down or slow can never pass for one that refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from shared.kafka.acls import PRINCIPALS, acls, allowed, apply
from shared.kafka.admin import catalogue_specs, ensure_topics
from shared.kafka.security import PLAINTEXT
from tests.conftest import Infra
from tests.support import eventually, unique
from tests.support.infra import OwnKafka
from tests.support.kafka_access import cluster_id, write
from tests.support.system import PRINCIPAL_OF, System, bearer, databases, running_system

pytestmark = pytest.mark.integration

PREFIX = unique("secure") + "."


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnKafka]:
    broker = OwnKafka(tmp_path_factory.mktemp("secured-kafka"), secure=True)
    try:
        broker.up()  # returns once the admin principal is answered, principals and ACLs made
        yield broker
    finally:
        broker.remove()


@pytest.fixture(scope="module")
async def catalogue(secured: OwnKafka) -> str:
    """The ACLs for this module's topic prefix, and the catalogue's topics under it (as `make
    up` makes them: by the admin principal, no service may create a catalogue topic)."""
    admin = secured.security("admin")
    passwords = {p: secured.password(p) for p in PRINCIPALS}
    await asyncio.to_thread(apply, secured.bootstrap, admin, acls(PREFIX), passwords)
    await ensure_topics(secured.bootstrap, catalogue_specs(PREFIX), security=admin)
    return PREFIX


async def test_a_plaintext_client_is_refused(secured: OwnKafka) -> None:
    assert await cluster_id(secured.bootstrap, secured.security("operator"))
    with pytest.raises(KafkaConnectionError):
        await cluster_id(secured.bootstrap, PLAINTEXT)


async def test_a_wrong_password_is_refused(
    secured: OwnKafka, caplog: pytest.LogCaptureFixture
) -> None:
    assert await cluster_id(secured.bootstrap, secured.security("inventory"))
    caplog.set_level(logging.ERROR, logger="aiokafka")
    wrong = secured.security("inventory", password="not-" + secured.password("inventory"))
    with pytest.raises(KafkaConnectionError):
        await cluster_id(secured.bootstrap, wrong)
    # refused by SCRAM, not by a connection that failed for another reason
    assert "SaslAuthenticationFailed" in caplog.text


async def _api_versions(port: int, context: ssl.SSLContext) -> bytes:
    """One ApiVersions round trip over TLS: the body of the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        client = b"leadline-test"
        request = struct.pack(">hhih", 18, 0, 1, len(client)) + client  # ApiVersions v0
        writer.write(struct.pack(">i", len(request)) + request)
        await writer.drain()
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        return await reader.readexactly(size)
    finally:
        writer.close()


async def test_the_controller_listener_takes_the_brokers_certificate_only(
    secured: OwnKafka,
) -> None:
    # its principal is a super user: no client without the brokers' own key may reach it
    port = secured.controller_ports[0]
    anonymous = ssl.create_default_context(cafile=str(secured.cafile))
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        async with asyncio.timeout(30):
            await _api_versions(port, anonymous)
    broker = ssl.create_default_context(cafile=str(secured.cafile))
    broker.load_cert_chain(secured.cafile.parent / "broker.pem")
    async with asyncio.timeout(30):
        assert await _api_versions(port, broker)


@pytest.mark.parametrize(
    ("principal", "topic", "may"),
    [
        ("inventory", "inventory.events", True),
        ("inventory", "checkout.commands", False),
        ("payment-provider", "payments.events", True),
        ("payment-provider", "inventory.events", False),
        ("projection", "checkout.events", False),
    ],
)
async def test_a_principal_writes_only_the_topics_its_party_produces(
    secured: OwnKafka, catalogue: str, principal: str, topic: str, may: bool
) -> None:
    physical = catalogue + topic
    assert allowed(acls(catalogue), principal, "topic", physical, "write") is may
    security = secured.security(principal)
    if may:
        # ACLs reach the broker's authorizer through its metadata log: moments after `apply`
        await eventually(
            lambda: write(secured.bootstrap, security, physical),
            lambda refused: refused is None,
            timeout=20,
            what=f"{principal} writes {topic}",
        )
    else:
        refused = await write(secured.bootstrap, security, physical)
        assert isinstance(refused, TopicAuthorizationFailedError), refused


async def test_a_principal_reads_only_the_topics_its_party_consumes(
    secured: OwnKafka, catalogue: str
) -> None:
    # a topic a principal may neither read nor write is not even described to it (READ and
    # WRITE imply DESCRIBE): its consumer gets no metadata, so never a partition to fetch
    async def described(principal: str, topic: str) -> int:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=secured.bootstrap, **secured.security(principal).aiokafka()
        )
        await admin.start()
        try:
            (found,) = await admin.describe_topics([catalogue + topic])
            return int(found["error_code"])
        finally:
            await admin.close()

    assert await described("inventory", "inventory.commands") == 0
    refused = TopicAuthorizationFailedError.errno
    assert await described("inventory", "checkout.events") == refused
    assert await described("payment-provider", "checkout.events") == refused


@contextlib.asynccontextmanager
async def _system(
    secured: OwnKafka, catalogue: str, infra: Infra, tmp_path: Path
) -> AsyncIterator[System]:
    async with (
        databases(infra.postgres_dsn) as dsns,
        running_system(
            dsns,
            catalogue,
            secured.bootstrap,
            tmp_path,
            with_projection=True,
            own_env=lambda service: secured.credentials(PRINCIPAL_OF[service]),
            **secured.env,
        ) as system,
    ):
        yield system


async def test_an_order_reaches_confirmed_with_its_receipt_every_service_as_itself(
    secured: OwnKafka, catalogue: str, infra: Infra, tmp_path: Path
) -> None:
    # Each group and each topic is open to its party's principal alone (the operator may only
    # describe groups), so the flow completing means every service connected as itself.
    async with _system(secured, catalogue, infra, tmp_path) as system:
        order_id = await system.place("alice", [{"sku": "TEA-001", "quantity": 1}])
        saga = await system.ends(order_id, timeout=60)
        assert saga["status"] == "completed", saga
        assert (await system.order(order_id, "alice"))["status"] == "confirmed"
        mails = await eventually(
            lambda: sorted(system.mailbox.glob("*.eml")), bool, what="receipt mailed"
        )
        assert mails == [system.mailbox / f"{saga['receipt_number']}.eml"]

        async def read_side() -> dict[str, object]:
            response = await system.http.get(
                system.url("projection", f"/orders/{order_id}"), headers=bearer("alice")
            )
            return response.json() if response.status_code == 200 else {}

        view = await eventually(
            read_side,
            lambda v: v.get("status") == "confirmed" and v.get("receipt") is not None,
            what="the read side sees the order confirmed with its receipt",
        )
        assert view["receipt"] == {**view["receipt"], "number": saga["receipt_number"]}
