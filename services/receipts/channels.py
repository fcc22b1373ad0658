"""Where receipts go: a mailbox folder (default) or an SMTP server. Both are idempotent where
the medium lets us check: the mailbox by file name, SMTP by the message's stable Message-ID
(the receiving side can recognise a resend; SMTP itself cannot tell us what it already has)."""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol


class Channel(Protocol):
    name: str

    async def deliver(self, receipt_number: str, message: EmailMessage) -> None:
        """Hand the message over; raise on failure (the delivery loop retries later)."""
        ...


class MailboxChannel:
    """One `<receipt number>.eml` file per receipt in a folder."""

    name = "mailbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, receipt_number: str) -> Path:
        return self.folder / f"{receipt_number}.eml"

    async def deliver(self, receipt_number: str, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, receipt_number, message.as_bytes())

    def _write(self, receipt_number: str, data: bytes) -> None:
        target = self.path(receipt_number)
        if target.exists():
            return  # delivered before (the attempt died before it could be marked delivered)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Write aside, then rename: a reader (or a crash) never sees half a receipt, and two
        # racing attempts both rename onto the one name, leaving a single file.
        tmp = self.folder / f".{receipt_number}.{uuid.uuid4().hex}.tmp"
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # make the rename itself durable before we report success
        finally:
            os.close(fd)


class SmtpChannel:
    """stdlib smtplib, run in a worker thread so the event loop never blocks on the network."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.username, self.password, self.starttls = username, password, starttls

    async def deliver(self, receipt_number: str, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
