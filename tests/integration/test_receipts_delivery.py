"""Receipt delivery on real PostgreSQL, through a real mailbox folder and a real SMTP
conversation: retries never issue a second receipt nor leave a second copy."""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import pytest

from services.receipts import bootstrap
from services.receipts.channels import MailboxChannel, SmtpChannel
from services.receipts.delivery import DeliveryLoop
from services.receipts.domain import Line, Order, Receipt, issue
from services.receipts.render import compose
from services.receipts.settings import ReceiptsSettings
from services.receipts.store import SCHEMA, PostgresReceiptsUnitOfWork, claim_due_deliveries
from shared.postgres import install_schema
from tests.support import eventually, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(pg_pool: asyncpg.Pool) -> asyncpg.Pool:
    await install_schema(pg_pool, SCHEMA)
    return pg_pool


async def _issued(pool: asyncpg.Pool, sequence: int = 1) -> Receipt:
    order = Order(unique("order"), "alice", "EUR", (Line("TEA-001", 2, 450, 900),))
    receipt = issue(order, f"LL-{sequence:08d}", Decimal("0.20"), datetime.now(UTC))
    async with PostgresReceiptsUnitOfWork(pool) as uow:
        await uow.receipts.add_order(order)
        await uow.receipts.add_receipt(receipt, "LL", sequence)
    return receipt


def _mail(receipt: Receipt) -> EmailMessage:
    return compose(receipt, sender="receipts@shop.example", recipient="alice@example.org")


@dataclass
class Flaky:
    """A channel (our own port) that fails its first `failures` calls, after delivering
    through `inner` when `deliver_first` is set: a send that worked but was never confirmed."""

    inner: MailboxChannel
    failures: int
    deliver_first: bool
    calls: int = 0
    name: str = "flaky"

    async def deliver(self, receipt_number: str, message: EmailMessage) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            if self.deliver_first:
                await self.inner.deliver(receipt_number, message)
            raise ConnectionError("channel unavailable")
        await self.inner.deliver(receipt_number, message)


async def _delivery(pool: asyncpg.Pool, number: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM deliveries WHERE receipt_number = $1", number)
    assert row is not None
    return row


@pytest.mark.parametrize("deliver_first", [False, True], ids=["failed-send", "unconfirmed-send"])
async def test_a_retried_mailbox_delivery_leaves_one_file(
    pool: asyncpg.Pool, tmp_path: Path, deliver_first: bool
) -> None:
    receipt = await _issued(pool)
    mailbox = MailboxChannel(tmp_path / "mailbox")
    channel = Flaky(mailbox, failures=2, deliver_first=deliver_first)
    loop = DeliveryLoop(pool=pool, channel=channel, compose=_mail, backoff_initial=0.01)

    await eventually(loop.deliver_due, lambda delivered: delivered == 1, what="delivered")

    assert [p.name for p in (tmp_path / "mailbox").iterdir()] == [f"{receipt.number}.eml"]
    assert mailbox.path(receipt.number).read_bytes() == _mail(receipt).as_bytes()
    row = await _delivery(pool, receipt.number)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, None)
    assert channel.calls == 3
    assert await pool.fetchval("SELECT count(*) FROM receipts") == 1
    assert await loop.deliver_due() == 0  # nothing is due any more


async def test_a_failed_delivery_waits_out_its_backoff(pool: asyncpg.Pool, tmp_path: Path) -> None:
    receipt = await _issued(pool)
    channel = Flaky(MailboxChannel(tmp_path), failures=1, deliver_first=False)
    loop = DeliveryLoop(pool=pool, channel=channel, compose=_mail, backoff_initial=3600)
    assert await loop.deliver_due() == 0
    assert await loop.deliver_due() == 0  # rescheduled an hour out, so not claimed again
    row = await _delivery(pool, receipt.number)
    assert row["status"] == "pending"
    assert "channel unavailable" in row["last_error"]
    assert channel.calls == 1


async def test_a_delivery_failing_for_the_1025th_time_is_rescheduled_and_the_loop_runs_on(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # months of a dead mail server: the backoff's exponent once overflowed a float here, killing
    # the loop, and the same row killed it again after every restart
    receipt = await _issued(pool)
    await pool.execute(
        "UPDATE deliveries SET attempts = 1024 WHERE receipt_number = $1", receipt.number
    )
    channel = Flaky(MailboxChannel(tmp_path), failures=10**6, deliver_first=False)
    loop = DeliveryLoop(pool=pool, channel=channel, compose=_mail, backoff_max=3600)
    task = asyncio.create_task(loop.run())
    try:
        row = await eventually(
            lambda: _delivery(pool, receipt.number),
            lambda r: r["attempts"] == 1025 and r["last_error"] is not None,
            what="the 1025th attempt recorded",
        )
        assert row["status"] == "pending"
        assert 3500 < (row["next_attempt_at"] - datetime.now(UTC)).total_seconds() <= 3600
        assert loop.is_alive()
        assert not task.done()
    finally:
        await loop.stop()
    assert task.exception() is None


async def test_a_delivery_claimed_by_a_process_that_died_is_taken_again_after_its_lease(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    receipt = await _issued(pool)
    mailbox = MailboxChannel(tmp_path)
    survivor = DeliveryLoop(pool=pool, channel=mailbox, compose=_mail)
    # an instance claims it and dies before reporting back; meanwhile nobody else may take it
    assert len(await claim_due_deliveries(pool, 10, 0.5)) == 1
    assert await claim_due_deliveries(pool, 10, 0.5) == []
    await eventually(survivor.deliver_due, lambda n: n == 1, what="taken again after the lease")
    assert mailbox.path(receipt.number).exists()


@dataclass
class SlowChannel:
    """Every send takes `seconds` on the loop's clock (a slow SMTP server), counted per receipt."""

    inner: MailboxChannel
    seconds: float
    now: float = 0.0
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    name: str = "slow"

    def clock(self) -> float:
        return self.now

    async def deliver(self, receipt_number: str, message: EmailMessage) -> None:
        self.calls[receipt_number] += 1
        await self.inner.deliver(receipt_number, message)
        self.now += self.seconds


async def test_a_pass_starts_no_send_that_could_outlive_its_lease(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    for sequence in (1, 2, 3):
        await _issued(pool, sequence)
    channel = SlowChannel(MailboxChannel(tmp_path), seconds=40.0)
    loop = DeliveryLoop(
        pool=pool, channel=channel, compose=_mail, lease_seconds=60.0, clock=channel.clock
    )
    # the second send would start 40 s into a 60 s lease: past its half, so it is not begun
    assert await loop.deliver_due() == 1
    assert sum(channel.calls.values()) == 1
    # the rest stay claimed until the lease ends: no other instance takes them meanwhile
    assert await claim_due_deliveries(pool, 10, 60.0) == []


@dataclass
class SmtpSink:
    """A minimal SMTP server (RFC 5321 subset) that keeps every message it accepts."""

    messages: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        await reply("220 sink ready")
        while line := await reader.readline():
            verb = line.decode().strip().split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                await reply("250 sink")
            elif verb == "DATA":
                await reply("354 go ahead")
                data = bytearray()
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                self.messages.append(bytes(data))
                await reply("250 queued")
            elif verb == "QUIT":
                await reply("221 bye")
                break
            else:
                await reply("250 ok")
        writer.close()


@pytest.fixture
async def smtp_sink() -> AsyncIterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield sink, port


async def test_a_resend_over_smtp_carries_the_same_message_id(
    pool: asyncpg.Pool, smtp_sink: tuple[SmtpSink, int]
) -> None:
    sink, port = smtp_sink
    receipt = await _issued(pool)
    smtp = SmtpChannel("127.0.0.1", port, timeout=5)
    await smtp.deliver(receipt.number, _mail(receipt))
    await smtp.deliver(receipt.number, _mail(receipt))  # a retry after an unconfirmed send
    first, again = (email.message_from_bytes(m) for m in sink.messages)
    assert first["Message-ID"] == again["Message-ID"] == f"<receipt.{receipt.number}@shop.example>"
    assert first["To"] == "alice@example.org"
    assert receipt.number in first["Subject"]


async def test_the_service_mails_the_customer_whose_id_has_a_colon(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # "mallory:alice@…" unquoted parses as the group "mallory:" holding alice@…: the receipt
    # would go to alice. The delivery loop the service builds must quote the local part.
    order = Order(unique("order"), "mallory:alice", "EUR", (Line("TEA-001", 1, 450, 450),))
    receipt = issue(order, "LL-00000001", Decimal("0.20"), datetime.now(UTC))
    async with PostgresReceiptsUnitOfWork(pool) as uow:
        await uow.receipts.add_order(order)
        await uow.receipts.add_receipt(receipt, "LL", 1)
    settings = ReceiptsSettings(mailbox_dir=tmp_path, customer_mail_domain="shop.example")
    loop = bootstrap.runtime(settings).make_workers["delivery"](pool)

    assert await loop.deliver_due() == 1

    mail = email.message_from_bytes(
        MailboxChannel(tmp_path).path(receipt.number).read_bytes(), policy=email.policy.default
    )
    (address,) = mail["To"].addresses
    assert (address.username, address.domain) == ("mallory:alice", "shop.example")
