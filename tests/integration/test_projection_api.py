"""The projection's HTTP API on real Kafka and PostgreSQL: the service app runs in-process
(lifespan and all: pool, view consumers, monitor) on a database and topics of this module's
own, and is fed by publishing the very events the other services publish.

One projection serves the whole module; tests stay independent by using their own order ids,
customers and SKUs (and, for the daily figures, a day no other test writes to).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from schemas.checkout.v1 import OrderConfirmed, OrderRejected
from schemas.checkout.v2 import OrderLine, OrderPlaced
from schemas.inventory.v1 import StockLevelChanged, StockLine, StockReserved
from schemas.payments.v1 import PaymentAuthorized
from schemas.receipts.v1 import ReceiptIssued
from schemas.registry import Message
from services.projection import api
from services.projection.bootstrap import create_app
from services.projection.settings import ProjectionSettings
from shared.auth import AuthSettings, make_bearer_dependency, mint_token
from shared.envelope import Envelope
from tests.conftest import Infra
from tests.support import eventually, unique
from tests.support.processes import catalogue_copy

pytestmark = pytest.mark.integration

AUTH = AuthSettings(jwt_secret="projection-api-test-secret-" + uuid.uuid4().hex)
ELSEWHERE = AuthSettings(jwt_secret="some-other-service-secret-" + uuid.uuid4().hex)
READ_WAIT = 0.5  # the service's bound on a min_version wait, kept short for the 425 tests
PATIENT_WAIT = 15.0  # a second router on the same pool, for a version applied mid-wait
STATS_DAY = date(2024, 2, 29)  # only the figures test writes outcomes on this day
EAST = timezone(timedelta(hours=2))


@dataclass
class Projection:
    http: httpx.AsyncClient  # the service app, as `create_app` builds it
    patient: httpx.AsyncClient  # the same routes and pool, waiting up to PATIENT_WAIT
    settings: ProjectionSettings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer

    async def publish(self, topic: str, *envelopes: Envelope) -> None:
        """Each envelope on catalogue topic `topic`, keyed as its producer keys it, in order."""
        for envelope in envelopes:
            sent = await self.producer.send(
                self.settings.topic(topic),
                envelope.to_bytes(),
                key=envelope.key.encode(),
                headers=envelope.headers(),
            )
            await sent


@contextlib.asynccontextmanager
async def _database(maintenance_dsn: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(maintenance_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{maintenance_dsn.rpartition('/')[0]}/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def projection(infra: Infra) -> AsyncIterator[Projection]:
    async with (
        _database(infra.postgres_dsn) as dsn,
        catalogue_copy(infra.kafka_bootstrap) as prefix,
    ):
        settings = ProjectionSettings(
            database_url=dsn,
            kafka_bootstrap_servers=infra.kafka_bootstrap,
            topic_prefix=prefix,
            consumer_group=unique("projection"),
            read_wait_seconds=READ_WAIT,
        )
        app = create_app(settings, AUTH)
        producer = AIOKafkaProducer(
            bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        async with app.router.lifespan_context(app):
            patient = FastAPI()
            patient.include_router(api.router(make_bearer_dependency(AUTH), read_wait=PATIENT_WAIT))
            patient.state.pool = app.state.pool
            await producer.start()
            try:
                async with (
                    _client(app) as http,
                    _client(patient) as patient_http,
                ):
                    yield Projection(http, patient_http, settings, app.state.pool, producer)
            finally:
                await producer.stop()


@contextlib.asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # a 500 is an answer to assert on, not an exception raised into the test
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://projection", timeout=30
    ) as client:
        yield client


def bearer(subject: str, *scopes: str, auth: AuthSettings = AUTH) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(auth, subject, scopes)}"}


ADMIN = bearer("ops", "admin")


def new_sku() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}-001"


# ---- publishing what the other services publish ----


def _event(
    message: Message,
    key: str,
    producer: str,
    *,
    version: int | None = None,
    at: datetime | None = None,
) -> Envelope:
    """`message` enveloped as `producer` does it; checkout's events carry their stream version."""
    envelope = Envelope.wrap(message, key=key, producer=producer)
    update: dict[str, Any] = {"stream_version": version}
    if at is not None:
        update["occurred_at"] = at
    return envelope.model_copy(update=update)


Lines = Iterable[tuple[str, int, int]]  # (sku, quantity, unit price in cents)


async def place(
    p: Projection,
    customer: str,
    lines: Lines = (("TEA-001", 2, 450),),
    *,
    order_id: str | None = None,
    at: datetime | None = None,
) -> str:
    """OrderPlaced v2 as checkout publishes it (stream version 1); the order's id."""
    order_id = order_id or unique("ord")
    priced = [
        OrderLine(sku=s, quantity=q, unit_price_cents=u, line_total_cents=q * u)
        for s, q, u in lines
    ]
    message = OrderPlaced(
        order_id=order_id,
        customer_id=customer,
        lines=priced,
        currency="EUR",
        total_cents=sum(line.line_total_cents for line in priced),
    )
    await p.publish("checkout.events", _event(message, order_id, "checkout", version=1, at=at))
    return order_id


async def decide(
    p: Projection, message: OrderConfirmed | OrderRejected, *, at: datetime | None = None
) -> None:
    """The order's terminal event as checkout publishes it (stream version 2)."""
    envelope = _event(message, message.order_id, "checkout", version=2, at=at)
    await p.publish("checkout.events", envelope)


async def fulfil(p: Projection, customer: str, lines: Lines = (("TEA-001", 2, 450),)) -> str:
    """A whole happy path: placed, reserved, authorized, confirmed, receipted; read by the view."""
    order_id = await place(p, customer, lines)
    stock = [StockLine(sku=s, quantity=q) for s, q, _ in lines]
    total = sum(q * u for _, q, u in lines)
    await p.publish(
        "inventory.events",
        _event(StockReserved(order_id=order_id, lines=stock), order_id, "inventory"),
    )
    authorized = PaymentAuthorized(
        order_id=order_id, payment_id=f"pay-{order_id}", amount_cents=total
    )
    await p.publish("payments.events", _event(authorized, order_id, "payment-provider-simulator"))
    await decide(p, OrderConfirmed(order_id=order_id))
    receipt = ReceiptIssued(
        order_id=order_id,
        customer_id=customer,
        receipt_number=f"LL-{uuid.uuid4().int % 10**8:08d}",
        currency="EUR",
        subtotal_cents=total,
        tax_cents=0,
        total_cents=total,
        issued_at=datetime.now(UTC),
    )
    await p.publish("receipts.events", _event(receipt, order_id, "receipts"))
    await seen(
        p,
        order_id,
        lambda o: (
            o["status"] == "confirmed"
            and None not in (o["receipt"], o["payment"], o["reservation"])
        ),
    )
    return order_id


async def seen(
    p: Projection, order_id: str, until: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The order as the admin scope reads it, once `until` holds for it."""

    async def read() -> dict[str, Any] | None:
        response = await p.http.get(f"/orders/{order_id}", headers=ADMIN)
        return response.json() if response.status_code == 200 else None

    found = await eventually(read, lambda o: o is not None and until(o), what=f"{order_id} read")
    assert found is not None
    return found


async def history(p: Projection, customer: str, limit: int = 100) -> list[str]:
    response = await p.http.get(f"/customers/me/orders?limit={limit}", headers=bearer(customer))
    assert response.status_code == 200, response.text
    return [o["order_id"] for o in response.json()["orders"]]


def same_but_for_the_id(a: httpx.Response, a_id: str, b: httpx.Response, b_id: str) -> None:
    """Two answers identical once each names its own id: nothing tells them apart."""
    assert a.status_code == b.status_code
    assert a.text.replace(a_id, "<id>") == b.text.replace(b_id, "<id>")
    assert a.headers.get("content-type") == b.headers.get("content-type")
    assert a.headers.get("retry-after") == b.headers.get("retry-after")


# ---- orders and who may see them ----


async def test_the_owner_reads_the_whole_order(projection: Projection) -> None:
    alice = unique("alice")
    order_id = await fulfil(projection, alice, (("TEA-001", 2, 450), ("CUP-001", 1, 1200)))
    response = await projection.http.get(f"/orders/{order_id}", headers=bearer(alice))
    assert response.status_code == 200, response.text
    order = response.json()
    assert (order["order_id"], order["customer_id"]) == (order_id, alice)
    assert (order["status"], order["version"], order["status_reason"]) == ("confirmed", 2, None)
    assert (order["currency"], order["total_cents"]) == ("EUR", 2100)
    assert order["lines"] == [
        {"sku": "TEA-001", "quantity": 2, "unit_price_cents": 450, "line_total_cents": 900},
        {"sku": "CUP-001", "quantity": 1, "unit_price_cents": 1200, "line_total_cents": 1200},
    ]
    assert order["reservation"] == {"state": "reserved", "reason": None}
    assert order["payment"] == {
        "state": "authorized",
        "payment_id": f"pay-{order_id}",
        "reason": None,
    }
    assert order["receipt"]["total_cents"] == 2100
    # the timeline in the order things happened, each step with what it is worth knowing
    assert [(s["step"], s["detail"]) for s in order["timeline"]] == [
        ("OrderPlaced", None),
        ("StockReserved", None),
        ("PaymentAuthorized", None),
        ("OrderConfirmed", None),
        ("ReceiptIssued", order["receipt"]["number"]),
    ]


async def test_another_customers_order_is_answered_exactly_like_a_missing_one(
    projection: Projection,
) -> None:
    alice, mallory = unique("alice"), unique("mallory")
    order_id = await place(projection, alice)
    await seen(projection, order_id, lambda o: o["version"] == 1)
    missing = unique("ord")
    assert len(missing) == len(order_id)
    others = await projection.http.get(f"/orders/{order_id}", headers=bearer(mallory))
    nothing = await projection.http.get(f"/orders/{missing}", headers=bearer(mallory))
    assert others.status_code == 404
    same_but_for_the_id(others, order_id, nothing, missing)
    assert alice not in others.text
    # the owner and the admin scope do see it
    assert (
        await projection.http.get(f"/orders/{order_id}", headers=bearer(alice))
    ).status_code == 200
    as_admin = await projection.http.get(f"/orders/{order_id}", headers=bearer("support", "admin"))
    assert as_admin.status_code == 200
    assert as_admin.json()["customer_id"] == alice


async def test_with_min_version_another_customers_order_answers_like_a_missing_one(
    projection: Projection,
) -> None:
    alice, mallory = unique("alice"), unique("mallory")
    order_id = await place(projection, alice)
    await decide(projection, OrderConfirmed(order_id=order_id))
    await seen(projection, order_id, lambda o: o["version"] == 2)
    missing = unique("ord")
    for wanted in (1, 2, 3):
        query = f"?min_version={wanted}"
        others = await projection.http.get(f"/orders/{order_id}{query}", headers=bearer(mallory))
        nothing = await projection.http.get(f"/orders/{missing}{query}", headers=bearer(mallory))
        assert others.status_code == 425, others.text
        assert others.json()["version"] == 0, "the real version would tell the order exists"
        assert others.json()["min_version"] == wanted
        same_but_for_the_id(others, order_id, nothing, missing)


async def test_an_order_whose_placement_is_not_read_yet_is_missing_even_to_its_customer(
    projection: Projection,
) -> None:
    # a receipt read before its OrderPlaced (another topic) makes a row naming the customer;
    # until the order itself is read, nobody can see it, nor its version
    alice = unique("alice")
    order_id = unique("ord")
    receipt = ReceiptIssued(
        order_id=order_id,
        customer_id=alice,
        receipt_number="LL-00000001",
        currency="EUR",
        subtotal_cents=900,
        tax_cents=0,
        total_cents=900,
        issued_at=datetime.now(UTC),
    )
    await projection.publish("receipts.events", _event(receipt, order_id, "receipts"))
    await eventually(
        lambda: projection.pool.fetchval(
            "SELECT count(*) FROM view_orders.orders WHERE order_id = $1", order_id
        ),
        lambda n: n == 1,
        what="the receipt's row",
    )
    for caller in (bearer(alice), ADMIN):
        assert (await projection.http.get(f"/orders/{order_id}", headers=caller)).status_code == 404
        waited = await projection.http.get(f"/orders/{order_id}?min_version=1", headers=caller)
        assert (waited.status_code, waited.json()["version"]) == (425, 0)
    assert order_id not in await history(projection, alice)
    await place(projection, alice, order_id=order_id)
    order = await seen(projection, order_id, lambda o: o["receipt"] is not None)
    assert (order["status"], order["version"]) == ("placed", 1)
    assert await history(projection, alice) == [order_id]


async def test_my_orders_never_lists_another_customers_orders(projection: Projection) -> None:
    alice, bob = unique("alice"), unique("bob")
    alices = [await place(projection, alice) for _ in range(2)]
    bobs = [await place(projection, bob)]
    for order_id in alices + bobs:
        await seen(projection, order_id, lambda o: o["version"] == 1)
    assert sorted(await history(projection, alice)) == sorted(alices)
    assert await history(projection, bob) == bobs
    # the admin scope reads any one order, but "my orders" are still the token subject's own
    assert await history(projection, unique("ops")) == []
    as_admin = await projection.http.get("/customers/me/orders", headers=bearer(alice, "admin"))
    assert sorted(o["order_id"] for o in as_admin.json()["orders"]) == sorted(alices)


ROUTES = [
    "/orders/ord-1",
    "/orders/ord-1?min_version=1",
    "/customers/me/orders",
    "/customers/me/orders?limit=2",
    "/stock/TEA-001",
    "/stock?sku=TEA-001&sku=CUP-001",
    "/stats/sales?from=2026-01-01&to=2026-01-31",
    "/stats/outcomes?from=2026-01-01&to=2026-01-31",
]
NOT_A_CALLER: dict[str, dict[str, str]] = {
    "no token": {},
    "not a jwt": {"Authorization": "Bearer not-a-token"},
    "another secret": bearer("alice", "admin", auth=ELSEWHERE),
    "expired": {"Authorization": f"Bearer {mint_token(AUTH, 'alice', ['admin'], ttl=-3600)}"},
    "not bearer": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("credentials", list(NOT_A_CALLER), ids=list(NOT_A_CALLER))
async def test_every_route_needs_a_valid_token(
    projection: Projection, route: str, credentials: str
) -> None:
    response = await projection.http.get(route, headers=NOT_A_CALLER[credentials])
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ["/stats/sales", "/stats/outcomes"])
async def test_figures_are_for_the_admin_scope_only(projection: Projection, route: str) -> None:
    query = "?from=2026-01-01&to=2026-01-02"
    refused = await projection.http.get(route + query, headers=bearer(unique("alice")))
    assert refused.status_code == 403
    other_scope = await projection.http.get(route + query, headers=bearer("bob", "orders:read"))
    assert other_scope.status_code == 403
    allowed = await projection.http.get(route + query, headers=ADMIN)
    assert allowed.status_code == 200
    assert isinstance(allowed.json(), list)


# ---- read-your-writes ----


async def test_a_version_already_applied_is_answered_at_once(projection: Projection) -> None:
    alice = unique("alice")
    order_id = await place(projection, alice)
    await decide(projection, OrderConfirmed(order_id=order_id))
    await seen(projection, order_id, lambda o: o["version"] == 2)
    for wanted in (1, 2):
        started = time.monotonic()
        response = await projection.http.get(
            f"/orders/{order_id}?min_version={wanted}", headers=bearer(alice)
        )
        assert time.monotonic() - started < READ_WAIT
        assert response.status_code == 200, response.text
        assert (response.json()["version"], response.json()["status"]) == (2, "confirmed")


async def test_a_version_never_reached_is_425_after_the_bounded_wait(
    projection: Projection,
) -> None:
    alice = unique("alice")
    order_id = await place(projection, alice)
    await seen(projection, order_id, lambda o: o["version"] == 1)
    for wanted in (2, 1_000_000):
        started = time.monotonic()
        response = await projection.http.get(
            f"/orders/{order_id}?min_version={wanted}", headers=bearer(alice)
        )
        took = time.monotonic() - started
        assert response.status_code == 425, response.text
        assert READ_WAIT <= took < READ_WAIT + 5
        body = response.json()
        assert set(body) == {"detail", "version", "min_version"}
        assert (body["version"], body["min_version"]) == (1, wanted)
        assert order_id in body["detail"]
        assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("bad", ["0", "-1", "1000001", "two"])
async def test_a_min_version_out_of_range_is_422(projection: Projection, bad: str) -> None:
    response = await projection.http.get(
        f"/orders/ord-1?min_version={bad}", headers=bearer("alice")
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "min_version"]


async def test_a_version_applied_while_the_request_waits_is_answered(
    projection: Projection,
) -> None:
    alice = unique("alice")
    order_id = await place(projection, alice)
    await seen(projection, order_id, lambda o: o["version"] == 1)
    request = asyncio.create_task(
        projection.patient.get(f"/orders/{order_id}?min_version=2", headers=bearer(alice))
    )
    # not a sleep: the request must still be pending, holding out for a version nobody has
    # published yet (it can only answer 425, and only after PATIENT_WAIT)
    done, _ = await asyncio.wait({request}, timeout=0.3)
    assert not done
    await decide(projection, OrderConfirmed(order_id=order_id))
    response = await asyncio.wait_for(request, PATIENT_WAIT + 5)
    assert response.status_code == 200, response.text
    assert (response.json()["version"], response.json()["status"]) == (2, "confirmed")


# ---- history paging ----


async def test_history_pages_newest_first_without_duplicates(projection: Projection) -> None:
    carol = unique("carol")
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    # two orders placed at the same instant: the order id breaks the tie, across pages too
    times = [
        base,
        base + timedelta(minutes=1),
        base + timedelta(minutes=1),
        base + timedelta(hours=1),
        base + timedelta(days=1),
    ]
    placed = {await place(projection, carol, at=at): at for at in times}
    for order_id in placed:
        await seen(projection, order_id, lambda o: o["version"] == 1)
    newest_first = sorted(placed, key=lambda o: (placed[o], o), reverse=True)

    for limit in (1, 2, 4, 5, 6):
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            response = await projection.http.get(
                "/customers/me/orders" + query, headers=bearer(carol)
            )
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append([o["order_id"] for o in body["orders"]])
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert len(pages) <= len(placed), "the cursor does not move on"
        assert [o for page in pages for o in page] == newest_first, limit
        assert all(len(page) == limit for page in pages[:-1])
        assert 1 <= len(pages[-1]) <= limit
    first = (
        await projection.http.get("/customers/me/orders?limit=5", headers=bearer(carol))
    ).json()
    assert first["orders"][0] == {
        "order_id": newest_first[0],
        "status": "placed",
        "placed_at": first["orders"][0]["placed_at"],
        "currency": "EUR",
        "total_cents": 900,
        "receipt_number": None,
    }
    assert datetime.fromisoformat(first["orders"][0]["placed_at"]) == base + timedelta(days=1)


async def test_no_orders_is_an_empty_last_page(projection: Projection) -> None:
    response = await projection.http.get("/customers/me/orders", headers=bearer(unique("dan")))
    assert response.status_code == 200
    assert response.json() == {"orders": [], "next_cursor": None}


def _cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "%FF%FE",
        _cursor("[1, 2]"),
        _cursor('["2026-01-01T00:00:00", "ord-1"]'),  # no offset: not one we handed out
        _cursor('["2026-01-01T00:00:00+00:00", 7]'),
        # a NUL cannot be sent to PostgreSQL as text: unchecked, this is a 500
        _cursor('["2026-01-01T00:00:00+00:00", "ord\\u0000"]'),
        # a time PostgreSQL cannot hold once moved to UTC (year 0): unchecked, a 500
        _cursor('["0001-01-01T00:00:00+14:00", "ord-1"]'),
        "x" * 301,
    ],
    ids=["garbage", "bytes", "numbers", "naive", "id-not-text", "nul", "year-0", "too-long"],
)
async def test_a_bad_cursor_is_422_naming_the_cursor(projection: Projection, cursor: str) -> None:
    response = await projection.http.get(
        f"/customers/me/orders?cursor={cursor}", headers=bearer("alice")
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    if isinstance(detail, str):
        assert detail.startswith("cursor")
    else:
        assert detail[0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("limit", ["0", "101", "-5", "ten"])
async def test_a_limit_out_of_range_is_422(projection: Projection, limit: str) -> None:
    response = await projection.http.get(
        f"/customers/me/orders?limit={limit}", headers=bearer("alice")
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


# ---- stock ----


async def test_stock_levels_by_sku(projection: Projection) -> None:
    known, other, unknown = new_sku(), new_sku(), new_sku()
    levels = [
        StockLevelChanged(sku=known, on_hand=10, reserved=0, available=10),
        StockLevelChanged(sku=other, on_hand=5, reserved=5, available=0),
        StockLevelChanged(sku=known, on_hand=10, reserved=3, available=7),  # the last one counts
    ]
    await projection.publish("inventory.events", *(_event(m, m.sku, "inventory") for m in levels))
    customer = bearer(unique("erin"))

    async def level(sku: str) -> httpx.Response:
        return await projection.http.get(f"/stock/{sku}", headers=customer)

    found = await eventually(
        lambda: level(known),
        lambda r: r.status_code == 200 and r.json()["reserved"] == 3,
        what="the last level",
    )
    body = found.json()
    assert {k: body[k] for k in ("sku", "on_hand", "reserved", "available")} == {
        "sku": known,
        "on_hand": 10,
        "reserved": 3,
        "available": 7,
    }
    assert datetime.fromisoformat(body["as_of"]).tzinfo is not None
    assert (await level(unknown)).status_code == 404
    await eventually(lambda: level(other), lambda r: r.status_code == 200, what="other sku")

    query = f"/stock?sku={known}&sku={unknown}&sku={other}&sku={known}"
    several = await projection.http.get(query, headers=customer)
    assert several.status_code == 200, several.text
    listed = several.json()
    assert [(s["sku"], s["available"]) for s in listed["levels"]] == sorted(
        [(known, 7), (other, 0)]
    )
    assert listed["unknown"] == [unknown]
    nothing = await projection.http.get(f"/stock?sku={unknown}", headers=customer)
    assert nothing.json() == {"levels": [], "unknown": [unknown]}


@pytest.mark.parametrize(
    "route",
    [
        "/stock/tea-001",
        "/stock/TEA_001",
        "/stock/T%00A-001",
        "/stock?sku=tea-001",
        "/stock?sku=TEA-001&sku=not%20a%20sku",
        "/stock",
        "/stock?sku=",
        "/stock?" + "&".join(f"sku=SKU{n:03d}" for n in range(101)),
    ],
)
async def test_a_malformed_or_missing_sku_is_422(projection: Projection, route: str) -> None:
    response = await projection.http.get(route, headers=bearer("alice"))
    assert response.status_code == 422, response.text
    assert "sku" in response.json()["detail"][0]["loc"]


# ---- figures ----


async def test_figures_count_a_confirmed_order_on_its_utc_day_and_a_rejection_by_reason(
    projection: Projection,
) -> None:
    tea, cup = new_sku(), new_sku()
    frank = unique("frank")
    placed_at = datetime(2024, 2, 29, 21, 0, tzinfo=UTC)
    # 00:30 on 1 March at UTC+2 is still 29 February in UTC
    confirmed_at = datetime(2024, 3, 1, 0, 30, tzinfo=EAST)
    confirmed = await place(projection, frank, ((tea, 2, 450), (cup, 1, 1200)), at=placed_at)
    await decide(projection, OrderConfirmed(order_id=confirmed), at=confirmed_at)
    reason = f"insufficient stock for {cup}"
    rejected = await place(projection, frank, ((cup, 3, 1200),), at=placed_at)
    await decide(projection, OrderRejected(order_id=rejected, reason=reason), at=placed_at)
    await place(projection, frank, ((tea, 5, 450),), at=placed_at)  # never decided: not a sale

    day = f"from={STATS_DAY}&to={STATS_DAY}"

    async def outcomes(query: str) -> list[dict[str, Any]]:
        response = await projection.http.get(f"/stats/outcomes?{query}", headers=ADMIN)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()
        return rows

    counted = await eventually(lambda: outcomes(day), lambda rows: len(rows) == 2, what="outcomes")
    assert counted == [
        {"day": str(STATS_DAY), "outcome": "confirmed", "reason": "", "orders": 1},
        {"day": str(STATS_DAY), "outcome": "rejected", "reason": reason, "orders": 1},
    ]

    # another view, another consumer group: it catches up on its own
    async def sales(query: str) -> list[dict[str, Any]]:
        response = await projection.http.get(f"/stats/sales?{query}", headers=ADMIN)
        assert response.status_code == 200, response.text
        return [r for r in response.json() if r["sku"] in (tea, cup)]

    sold = await eventually(lambda: sales(day), lambda rows: len(rows) == 2, what="sales")
    assert sold == sorted(
        [
            {
                "day": str(STATS_DAY),
                "sku": tea,
                "currency": "EUR",
                "quantity": 2,
                "revenue_cents": 900,
                "orders": 1,
            },
            {
                "day": str(STATS_DAY),
                "sku": cup,
                "currency": "EUR",
                "quantity": 1,
                "revenue_cents": 1200,
                "orders": 1,
            },
        ],
        key=lambda r: r["sku"],
    )
    next_day = STATS_DAY + timedelta(days=1)
    assert await sales(f"from={next_day}&to={next_day}") == []
    assert await outcomes(f"from={next_day}&to={next_day}") == []
    # a range around the day finds the same rows
    around = f"from={STATS_DAY - timedelta(days=3)}&to={next_day}"
    assert await sales(around) == sold
    assert await outcomes(around) == counted


@pytest.mark.parametrize("route", ["/stats/sales", "/stats/outcomes"])
@pytest.mark.parametrize(
    ("first", "last", "status"),
    [
        ("2026-01-02", "2026-01-01", 422),  # from after to
        ("2024-01-01", "2024-12-31", 200),  # 366 days, both included: the longest range
        ("2024-01-01", "2025-01-01", 422),  # 367 days
        ("2026-01-01", "2026-01-01", 200),
        ("2026-02-30", "2026-03-01", 422),  # not a date
    ],
)
async def test_figures_refuse_a_range_backwards_or_over_366_days(
    projection: Projection, route: str, first: str, last: str, status: int
) -> None:
    response = await projection.http.get(f"{route}?from={first}&to={last}", headers=ADMIN)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("route", ["/stats/sales", "/stats/outcomes"])
@pytest.mark.parametrize("query", ["", "?from=2026-01-01", "?to=2026-01-01"])
async def test_figures_need_both_ends_of_the_range(
    projection: Projection, route: str, query: str
) -> None:
    response = await projection.http.get(route + query, headers=ADMIN)
    assert response.status_code == 422


# ---- operations ----


async def test_readiness_reports_every_views_lag_and_metrics_the_lag_gauge(
    projection: Projection,
) -> None:
    ready = await eventually(
        lambda: projection.http.get("/health/ready"),
        lambda r: r.status_code == 200,
        what="ready",
    )
    checks = ready.json()["checks"]
    for view in ("orders", "stock", "sales", "outcomes"):
        assert checks[f"lag_{view}"] == {"ok": True}
    assert {"postgres", "kafka", "consumer", "monitor"} <= set(checks)
    metrics = await eventually(
        lambda: projection.http.get("/metrics"),
        lambda r: 'leadline_projection_view_lag{view="orders"}' in r.text,
        what="the lag gauge",
    )
    assert metrics.status_code == 200
    live = await projection.http.get("/health/live")
    assert live.status_code == 200
