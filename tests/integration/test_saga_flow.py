"""The order saga end to end: checkout, inventory, receipts, the payment-provider simulator and
the orchestrator run as real processes on real Kafka and PostgreSQL, each with its own
database; a customer places orders over HTTP and the saga alone takes each to its end."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.orchestrator.consumers import Topics
from services.orchestrator.settings import OrchestratorSettings
from shared.kafka.admin import partitions
from tests.conftest import Infra
from tests.support import eventually
from tests.support.system import PAY_TIMEOUT, System, bearer, databases, running_system

pytestmark = pytest.mark.integration


@pytest.fixture
async def system(
    infra: Infra, catalogue_prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[System]:
    async with (
        databases(infra.postgres_dsn) as dsns,
        running_system(dsns, catalogue_prefix, kafka_bootstrap, tmp_path) as made,
    ):
        yield made


async def test_an_order_is_confirmed_and_its_receipt_mailed_by_the_saga_alone(
    system: System,
) -> None:
    before = await system.stock("TEA-001")
    order_id = await system.place("alice", [{"sku": "TEA-001", "quantity": 2}])

    saga = await system.ends(order_id)
    assert saga["status"] == "completed"
    assert [s["type"] for s in saga["steps"]] == [
        "OrderPlaced",
        "StockReserved",
        "PaymentAuthorized",
        "OrderConfirmed",
        "ReceiptIssued",
    ]
    assert [s["commands"] for s in saga["steps"][:3]] == [
        ["ReserveStock"],
        ["RequestPayment"],
        ["ConfirmOrder"],
    ]
    assert (await system.order(order_id, "alice"))["status"] == "confirmed"
    after = await system.stock("TEA-001")
    assert after["reserved"] == before["reserved"] + 2
    assert (await system.payment(order_id))["status"] == "authorized"
    mails = await eventually(
        lambda: sorted(system.mailbox.glob("*.eml")), bool, what="receipt mailed"
    )
    assert mails == [system.mailbox / f"{saga['receipt_number']}.eml"]


async def test_out_of_stock_is_rejected_and_nothing_is_held(system: System) -> None:
    before = await system.stock("KETTLE-01")
    order_id = await system.place("alice", [{"sku": "KETTLE-01", "quantity": 100}])
    saga = await system.ends(order_id)
    assert (saga["status"], saga["reason"]) == ("rejected", "insufficient stock for KETTLE-01")
    order = await system.order(order_id, "alice")
    assert (order["status"], order["reason"]) == ("rejected", "insufficient stock for KETTLE-01")
    assert await system.stock("KETTLE-01") == before
    assert (await system.payment(order_id)).get("status") in (None, "unknown")


async def test_a_declined_payment_releases_the_stock_and_rejects_the_order(
    system: System,
) -> None:
    before = await system.stock("CUP-001")
    order_id = await system.place("decline-bob", [{"sku": "CUP-001", "quantity": 1}])
    saga = await system.ends(order_id)
    assert saga["status"] == "rejected"
    assert saga["reason"].startswith("payment declined")
    assert (await system.order(order_id, "decline-bob"))["status"] == "rejected"
    assert await system.stock("CUP-001") == before  # reserved, then released


async def test_a_payment_that_never_answers_is_released_voided_and_rejected(
    system: System,
) -> None:
    before = await system.stock("POT-001")
    order_id = await system.place("silent-carol", [{"sku": "POT-001", "quantity": 1}])
    saga = await system.ends(order_id, timeout=2 * PAY_TIMEOUT + 60)
    assert (saga["status"], saga["reason"]) == ("rejected", "payment timed out")
    commands = [c for s in saga["steps"] for c in s["commands"]]
    assert commands == [
        "ReserveStock",
        "RequestPayment",
        "RequestPayment",  # asked once more at the first deadline
        "ReleaseStock",
        "VoidPayment",
        "RejectOrder",
    ]
    assert (await system.order(order_id, "silent-carol"))["status"] == "rejected"
    assert await system.stock("POT-001") == before
    assert (await system.payment(order_id))["status"] == "voided"


async def test_a_cancel_while_paying_releases_and_voids_and_ends_cancelled(
    system: System,
) -> None:
    before = await system.stock("TEA-002")
    order_id = await system.place("silent-dave", [{"sku": "TEA-002", "quantity": 1}])
    await eventually(lambda: system.saga(order_id), lambda s: s["status"] == "paying")
    cancel = await system.http.post(
        system.url("checkout", f"/orders/{order_id}/cancel"), headers=bearer("silent-dave")
    )
    assert cancel.status_code == 200, cancel.text
    saga = await system.ends(order_id)
    assert saga["status"] == "cancelled"
    assert [c for s in saga["steps"] for c in s["commands"]][-2:] == [
        "ReleaseStock",
        "VoidPayment",
    ]
    assert await system.stock("TEA-002") == before


async def test_a_cancel_while_reserving_releases_whatever_was_reserved(system: System) -> None:
    inventory = system.procs["inventory"].proc
    assert inventory is not None
    before = await system.stock("TEA-003")
    os.kill(inventory.pid, signal.SIGSTOP)  # inventory holds the ReserveStock for now
    try:
        order_id = await system.place("erin", [{"sku": "TEA-003", "quantity": 3}])
        await eventually(lambda: system.saga(order_id), lambda s: s["status"] == "reserving")
        cancel = await system.http.post(
            system.url("checkout", f"/orders/{order_id}/cancel"), headers=bearer("erin")
        )
        assert cancel.status_code == 200, cancel.text
        await eventually(lambda: system.saga(order_id), lambda s: s["status"] == "cancelling")
    finally:
        os.kill(inventory.pid, signal.SIGCONT)
    saga = await system.ends(order_id)
    assert saga["status"] == "cancelled"
    assert await system.stock("TEA-003") == before


async def test_sagas_are_shown_to_the_admin_scope_only(system: System) -> None:
    order_id = await system.place("frank", [{"sku": "TEA-001", "quantity": 1}])
    await system.ends(order_id)
    for path in (f"/sagas/{order_id}", "/sagas", "/sagas?state=bogus&limit=0"):
        url = system.url("orchestrator", path)
        assert (await system.http.get(url)).status_code == 401
        # the order's own customer too: sagas are an operator's view
        refused = await system.http.get(url, headers=bearer("frank"))
        assert refused.status_code == 403, path
    listed = await system.http.get(
        system.url("orchestrator", "/sagas?state=completed"), headers=bearer("ops", "admin")
    )
    assert listed.status_code == 200
    assert order_id in [s["order_id"] for s in listed.json()["sagas"]]
    assert listed.json()["counts"]["completed"] >= 1


async def test_the_orchestrator_exports_its_lag_and_counts_the_messages_it_handles(
    system: System, catalogue_prefix: str, kafka_bootstrap: str
) -> None:
    # what the consumer alerts read (deploy/observability/alerts.yml): lag waiting with no
    # message handled is "stalled", so a saga step must count as handled too
    order_id = await system.place("alice", [{"sku": "TEA-001", "quantity": 1}])
    await system.ends(order_id)
    topics = Topics.with_prefix(catalogue_prefix)
    watched = [*topics.sources, topics.payments_upstream]
    # the only instance holds every partition of what its agents read
    expected = {
        (topic, str(p))
        for topic, numbers in (await partitions(kafka_bootstrap, watched)).items()
        for p in numbers
    }
    group = OrchestratorSettings(topic_prefix=catalogue_prefix).faust_id

    async def samples(name: str) -> list[Sample]:
        text = (await system.http.get(system.url("orchestrator", "/metrics"))).text
        return [
            s
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and s.labels["consumer"] == group
        ]

    async def lags() -> dict[tuple[str, str], float]:
        found = await samples("leadline_consumer_lag")
        return {(s.labels["topic"], s.labels["partition"]): s.value for s in found}

    # its records all handled and committed: nothing waits on any of them
    await eventually(
        lags,
        lambda lags: set(lags) == expected and not any(lags.values()),
        timeout=60,
        what="the orchestrator's lag exported and caught up",
    )
    handled = {
        (s.labels["topic"], s.labels["type"], s.labels["outcome"]): s.value
        for s in await samples("leadline_messages_handled_total")
    }
    for topic, type_ in (
        (topics.checkout_events, "OrderPlaced"),
        (topics.inventory_events, "StockReserved"),
        (topics.payments_upstream, "PaymentAuthorized"),  # re-keyed
        (topics.payments, "PaymentAuthorized"),
        (topics.receipts_events, "ReceiptIssued"),
    ):
        assert handled.get((topic, type_, "applied"), 0) >= 1, (topic, type_, handled)
