from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.receipts.bootstrap import channel
from services.receipts.channels import MailboxChannel, SmtpChannel
from services.receipts.settings import ReceiptsSettings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIPTS_TAX_RATE", "0.075")
    monkeypatch.setenv("RECEIPTS_ISSUER", "SHOP2")
    monkeypatch.setenv("RECEIPTS_MAILBOX_DIR", "/tmp/box")
    monkeypatch.setenv("LEADLINE_TOPIC_PREFIX", "t1.")
    settings = ReceiptsSettings()
    assert settings.tax_rate == Decimal("0.075")
    assert settings.issuer == "SHOP2"
    assert settings.topic("receipts.events") == "t1.receipts.events"
    assert isinstance(channel(settings), MailboxChannel)


@pytest.mark.parametrize(
    ("field", "value"), [("tax_rate", "0.12345"), ("tax_rate", "-0.1"), ("issuer", "ll-1")]
)
def test_values_that_would_corrupt_receipts_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        ReceiptsSettings.model_validate({field: value})


def test_an_smtp_host_switches_delivery_to_smtp() -> None:
    settings = ReceiptsSettings(smtp_host="mail.example", smtp_port=2525, mailbox_dir=Path("x"))
    chosen = channel(settings)
    assert isinstance(chosen, SmtpChannel)
    assert (chosen.host, chosen.port) == ("mail.example", 2525)
