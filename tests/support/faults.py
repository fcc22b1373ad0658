"""Fault injection for the whole system: a customer load at a fixed arrival rate, a schedule of
faults (SIGKILL, SIGSTOP/SIGCONT, broker and database crashes), a supervisor that restarts what
died (as systemd or Kubernetes would), poison records, and the invariants checked afterwards
from the services' own databases and topics.

Used by `tests/e2e/test_faults.py`; its module docstring says what is run at which scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from schemas.catalogue import TOPICS
from tests.support import eventually
from tests.support.processes import ServiceProcess, read_records
from tests.support.system import System, bearer

Kind = Literal["approve", "decline", "short", "cancel"]
IN_FLIGHT = 32  # requests the load has open at once


@dataclass(frozen=True)
class Intent:
    """One order the load means to place: who, what, and what should happen to it."""

    index: int
    kind: Kind
    customer: str
    lines: tuple[tuple[str, int], ...]
    key: str  # the Idempotency-Key every retry of this order carries

    def body(self) -> dict[str, Any]:
        return {"lines": [{"sku": sku, "quantity": q} for sku, q in self.lines]}


def intents(count: int, skus: list[str], short_sku: str, rng: random.Random) -> list[Intent]:
    """Mostly orders that should be confirmed; some declined by the payment provider, some
    asking for more of `short_sku` than it will ever have, some cancelled by their customer
    soon after placing."""
    made: list[Intent] = []
    for i in range(count):
        kind: Kind = rng.choices(
            ["approve", "decline", "short", "cancel"], weights=[70, 10, 8, 12]
        )[0]
        customer = f"{'decline-' if kind == 'decline' else ''}fault-{i}-{uuid.uuid4().hex[:6]}"
        lines = tuple((sku, rng.randint(1, 3)) for sku in rng.sample(skus, k=rng.choice([1, 1, 2])))
        if kind == "short":
            lines = (*lines[:1], (short_sku, 100))
        made.append(Intent(i, kind, customer, lines, uuid.uuid4().hex))
    return made


class Load:
    """Places every intent at a fixed arrival rate (open loop: a slow system does not slow the
    arrivals), each through whichever checkout instance answers, retried with its
    Idempotency-Key until acknowledged, as a careful client would across crashes. Cancels the
    `cancel` ones a moment later, retried until answered."""

    def __init__(self, system: System, planned: list[Intent], rate: float, seed: int) -> None:
        self.system, self.planned, self.rate = system, planned, rate
        self.acknowledged: dict[str, Intent] = {}
        self.refused: list[tuple[Intent, int, str]] = []
        self.retries = 0
        self.cancels: Counter[int] = Counter()  # cancel answers by status code
        self._rng = random.Random(seed)
        self._entry = 0
        # A bounded client: with every arrival of an outage queued in httpcore's pool, the pool
        # spends its time matching hundreds of waiting requests to connections (seen: the
        # load stalled for minutes). Arrivals past the bound wait for a slot instead.
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=2.0),
            limits=httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT),
        )

    @property
    def duration(self) -> float:
        return len(self.planned) / self.rate

    async def run(self) -> None:
        start = time.monotonic()
        tasks = []
        for intent in self.planned:
            # the arrival schedule, not a guess: wait for this order's planned moment
            await asyncio.sleep(max(0.0, start + intent.index / self.rate - time.monotonic()))
            tasks.append(asyncio.create_task(self._place(intent)))
        await asyncio.gather(*tasks)

    async def close(self) -> None:
        await self._http.aclose()

    def _checkout(self) -> str:
        names = self.system.instances("checkout")
        self._entry += 1
        return names[self._entry % len(names)]

    async def _until_answered(
        self, send: Callable[[str], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        """Retry on anything that is not an answer (no connection, a timeout, a 5xx)."""
        while True:
            try:
                async with self._slots:
                    response = await send(self._checkout())
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500:
                return response
            self.retries += 1
            await asyncio.sleep(0.25)  # back-off before the next attempt, not a wait for state

    async def _place(self, intent: Intent) -> None:
        headers = {**bearer(intent.customer), "Idempotency-Key": intent.key}

        async def send(instance: str) -> httpx.Response:
            url = self.system.url(instance, "/orders")
            return await self._http.post(url, json=intent.body(), headers=headers)

        response = await self._until_answered(send)
        if response.status_code != 201:
            self.refused.append((intent, response.status_code, response.text))
            return
        order_id: str = response.json()["order_id"]
        self.acknowledged[order_id] = intent
        if intent.kind == "cancel":
            await asyncio.sleep(self._rng.uniform(0.0, 1.5))  # the customer changes their mind

            async def cancel(instance: str) -> httpx.Response:
                url = self.system.url(instance, f"/orders/{order_id}/cancel")
                return await self._http.post(url, headers=bearer(intent.customer))

            self.cancels[(await self._until_answered(cancel)).status_code] += 1


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the load starts
    action: Literal["kill", "pause", "broker", "postgres"]
    target: str = ""  # a process name, or a broker node number
    hold: float = 0.0  # kill: how long it stays down; pause: how long it stays stopped


@dataclass
class Schedule:
    """Faults at random moments of the load (seeded: the seed is printed, a run can be
    repeated). The supervisor brings killed processes back after their hold."""

    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def plan(
        cls,
        rng: random.Random,
        duration: float,
        *,
        kill: Iterable[str],
        kills_each: int,
        kill_hold: float,
        pause: str,
        pause_for: float,
        broker_nodes: list[int],
        postgres_crashes: int,
    ) -> Schedule:
        def moment() -> float:
            return rng.uniform(0.05, 0.85) * duration

        faults = [Fault(moment(), "kill", n, kill_hold) for n in kill for _ in range(kills_each)]
        faults.append(Fault(moment(), "pause", pause, pause_for))
        # broker restarts and the database crash apart from each other, in the load's middle
        slots = [
            duration * (0.2 + 0.6 * i / max(1, len(broker_nodes) + postgres_crashes))
            for i in range(len(broker_nodes) + postgres_crashes)
        ]
        rng.shuffle(slots)
        faults += [Fault(slots.pop(), "broker", str(n)) for n in broker_nodes]
        faults += [Fault(slots.pop(), "postgres") for _ in range(postgres_crashes)]
        return cls(sorted(faults, key=lambda f: f.at))


class Infrastructure:
    """What the chaos may crash besides the services: the broker nodes and the database."""

    def __init__(
        self,
        kill_broker: Callable[[int], None],
        start_broker: Callable[[int], None],
        crash_postgres: Callable[[], None],
        start_postgres: Callable[[], None],
    ) -> None:
        self.kill_broker, self.start_broker = kill_broker, start_broker
        self.crash_postgres, self.start_postgres = crash_postgres, start_postgres


class Supervisor:
    """Restarts every process that died or whose liveness check fails, as a process manager
    would; a process killed on purpose stays down for its fault's hold first."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.held: dict[str, float] = {}  # name -> monotonic time it may come back
        self.paused: set[str] = set()
        self.restarts: Counter[str] = Counter()
        self.unexpected: list[str] = []  # exits and liveness failures nobody caused
        self.log: list[str] = []  # what it did, when
        self._stop = asyncio.Event()
        self._started = time.monotonic()
        self._http = httpx.AsyncClient(timeout=2.0)

    async def run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.system.procs.items():
                if name in self.paused or proc.proc is None:
                    continue
                if proc.proc.poll() is not None:
                    if name not in self.held:
                        self._note(f"{name} exited with {proc.proc.returncode}", unexpected=True)
                    if time.monotonic() >= self.held.get(name, 0.0):
                        self.held.pop(name, None)
                        self.restarts[name] += 1
                        self._note(f"{name} restarted")
                        proc.start()
                    continue
                if await self._liveness_failed(name):
                    self._note(f"{name} failed its liveness check", unexpected=True)
                    self.restarts[name] += 1
                    proc.kill()
                    proc.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)

    def _note(self, what: str, *, unexpected: bool = False) -> None:
        self.log.append(f"{time.monotonic() - self._started:6.1f}s {what}")
        if unexpected:
            self.unexpected.append(self.log[-1].strip())

    async def _liveness_failed(self, name: str) -> bool:
        try:
            live = await self._http.get(self.system.url(name, "/health/live"))
        except httpx.TransportError:
            return False  # starting, or busy: not a liveness verdict
        return live.status_code == 503

    async def stop(self, task: asyncio.Task[None]) -> None:
        self._stop.set()
        await task
        await self._http.aclose()


class Chaos:
    """Carries out a schedule while the load runs; each fault is logged with its moment."""

    def __init__(
        self, system: System, supervisor: Supervisor, infra: Infrastructure, schedule: Schedule
    ) -> None:
        self.system, self.supervisor, self.infra = system, supervisor, infra
        self.schedule = schedule
        self.done: list[str] = []
        self._start = time.monotonic()
        # one infrastructure fault at a time: a broker killed again while it is still starting
        # from the last kill, or crashed together with the database, tests nothing more
        self._infra_faults = asyncio.Lock()

    async def run(self) -> None:
        self._start = time.monotonic()
        pending: list[asyncio.Task[None]] = []
        for fault in self.schedule.faults:
            await asyncio.sleep(max(0.0, self._start + fault.at - time.monotonic()))  # its moment
            pending.append(asyncio.create_task(self._do(fault, time.monotonic() - self._start)))
        await asyncio.gather(*pending)

    def _elapsed(self) -> float:
        return time.monotonic() - self._start

    async def _do(self, fault: Fault, at: float) -> None:
        match fault.action:
            case "kill":
                proc = self.system.procs[fault.target]
                if proc.proc is not None and proc.proc.poll() is None:
                    self.done.append(f"{at:6.1f}s SIGKILL {fault.target}")
                    self.supervisor.held[fault.target] = time.monotonic() + fault.hold
                    proc.kill()
                else:
                    self.done.append(f"{at:6.1f}s SIGKILL {fault.target}: already down")
            case "pause":
                self.done.append(f"{at:6.1f}s SIGSTOP {fault.target} for {fault.hold:.0f} s")
                await self._pause(self.system.procs[fault.target], fault.target, fault.hold)
            case "broker":
                node = int(fault.target)
                async with self._infra_faults:
                    self.done.append(f"{self._elapsed():6.1f}s broker {node} SIGKILL")
                    await asyncio.to_thread(self.infra.kill_broker, node)
                    await asyncio.to_thread(self.infra.start_broker, node)
                    self.done.append(f"{self._elapsed():6.1f}s broker {node} back")
            case "postgres":
                async with self._infra_faults:
                    self.done.append(f"{self._elapsed():6.1f}s postgres crash")
                    await asyncio.to_thread(self.infra.crash_postgres)
                    await asyncio.to_thread(self.infra.start_postgres)
                    self.done.append(f"{self._elapsed():6.1f}s postgres back")

    async def _pause(self, proc: ServiceProcess, name: str, seconds: float) -> None:
        # killed just before: paused once the supervisor has it running again
        await eventually(
            lambda: proc.proc is not None and proc.proc.poll() is None,
            bool,
            timeout=60,
            what=f"{name} running, to be paused",
        )
        assert proc.proc is not None
        self.supervisor.paused.add(name)
        proc.proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)  # stopped for longer than its session timeout
        finally:
            proc.proc.send_signal(signal.SIGCONT)
            self.supervisor.paused.discard(name)


# ---------------------------------------------------------------- poison


@dataclass(frozen=True)
class Poison:
    topic: str  # the catalogue name, without the run's prefix
    key: bytes
    value: bytes


def poison_for_every_consumed_topic() -> list[Poison]:
    """Garbage on every catalogue topic someone consumes (all of them are): each must end in
    that topic's dead-letter topic with a reason, once per consumer group reading it."""
    made = []
    for topic in TOPICS:
        marker = uuid.uuid4().hex
        made.append(Poison(topic.name, marker.encode(), f"not json {marker}".encode()))
    return made


# ---------------------------------------------------------------- invariants


@dataclass(frozen=True)
class Check:
    name: str
    expected: str
    actual: str
    ok: bool


def check(name: str, expected: object, actual: object) -> Check:
    return Check(name, str(expected), str(actual), expected == actual)


# what the saga processor logs when it recovers from faust's fetching (processor.py)
STREAM_REPAIRS = {
    "offset jumps in the saga agent's stream (read again)": (
        '"records skipped by the stream, read again"'
    ),
    "stalled saga partitions (read again)": '"stalled partition read again"',
}


def saga_stream_repairs(logs: Iterable[Path]) -> list[Check]:
    """How often the orchestrators repaired faust's fetching (their logs say so): each repair
    reads records again, so these are reported, not failed (the other rows say whether
    anything was lost)."""
    text = [log.read_text(errors="replace") for log in logs if log.exists()]
    return [
        Check(name, "reported", str(sum(t.count(line) for t in text)), True)
        for name, line in STREAM_REPAIRS.items()
    ]


def table(title: str, rows: list[Check], facts: dict[str, object]) -> str:
    """The outcome as a Markdown table (pasted as is into the README and closing notes)."""
    lines = [f"### {title}", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += ["", "| invariant | expected | actual | |", "|---|---|---|---|"]
    lines += [
        f"| {r.name} | {r.expected} | {r.actual} | {'ok' if r.ok else 'FAILED'} |" for r in rows
    ]
    return "\n".join(lines)


async def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def _keyed(dsn: str, query: str) -> dict[Any, Any]:
    """First column -> the second (or a tuple of the others), one entry per row."""
    rows = await _fetch(dsn, query)
    return {r[0]: r[1] if len(r) == 2 else tuple(r[1:]) for r in rows}


async def checkout_outcomes(dsn: str) -> dict[str, list[str]]:
    """Each order's terminal events in checkout's event store (one expected per order)."""
    rows = await _fetch(
        dsn,
        "SELECT stream_id, array_agg(type ORDER BY stream_version) AS types FROM events"
        " WHERE type = ANY('{OrderConfirmed,OrderRejected,OrderCancelled}') GROUP BY stream_id",
    )
    return {r["stream_id"]: list(r["types"]) for r in rows}


async def settled(dsns: dict[str, str], acknowledged: Iterable[str]) -> int:
    """How many acknowledged orders have no terminal event yet."""
    ended = await checkout_outcomes(dsns["checkout"])
    return sum(1 for order_id in acknowledged if order_id not in ended)


OPEN_SAGAS = (
    "SELECT order_id, status FROM sagas"
    " WHERE status NOT IN ('completed', 'rejected', 'cancelled', 'failed')"
)


async def sagas_open(dsns: dict[str, str]) -> dict[str, str]:
    """Sagas not ended yet, by order id."""
    return await _keyed(dsns["orchestrator"], OPEN_SAGAS)


async def projection_behind(dsns: dict[str, str]) -> int:
    """Orders whose read model is not at checkout's version yet (0 when caught up)."""
    versions = await _keyed(
        dsns["checkout"], "SELECT stream_id, max(stream_version) AS v FROM events GROUP BY 1"
    )
    seen = await _keyed(dsns["projection"], "SELECT order_id, version FROM view_orders.orders")
    return sum(1 for order_id, v in versions.items() if seen.get(order_id) != v)


async def invariants(
    dsns: dict[str, str],
    load: Load,
    initial_stock: dict[str, int],
    dead_letters: dict[str, list[tuple[bytes | None, str, str]]],
    poison: list[Poison],
) -> list[Check]:
    """Every promise of DESIGN §4 checked on the services' own databases after the run."""
    rows: list[Check] = []
    acknowledged = set(load.acknowledged)
    ended = await checkout_outcomes(dsns["checkout"])
    placed = await _keyed(
        dsns["checkout"], "SELECT stream_id, payload::text FROM events WHERE type = 'OrderPlaced'"
    )
    rows.append(
        check(
            "orders in checkout = acknowledged (none lost, none doubled by a retry)",
            len(acknowledged),
            len(placed),
        )
    )
    rows.append(
        check("acknowledged orders missing from checkout", 0, len(acknowledged - set(placed)))
    )
    rows.append(
        check("acknowledged orders not terminal", 0, sum(1 for o in acknowledged if o not in ended))
    )
    rows.append(
        check(
            "orders with more than one terminal event",
            0,
            sum(1 for t in ended.values() if len(t) > 1),
        )
    )
    outcome = {o: t[0] for o, t in ended.items()}
    confirmed = {o for o, t in outcome.items() if t == "OrderConfirmed"}
    rejected = {o for o, t in outcome.items() if t == "OrderRejected"}
    cancelled = {o for o, t in outcome.items() if t == "OrderCancelled"}
    rows.append(
        check(
            "confirmed + rejected + cancelled = acknowledged",
            len(acknowledged),
            len(confirmed) + len(rejected) + len(cancelled),
        )
    )
    # what each kind of order may end as: a fault may reject any order (a deadline), never
    # confirm one that should not be
    never_confirmed = {o for o, i in load.acknowledged.items() if i.kind in ("decline", "short")}
    rows.append(check("declined or short orders confirmed", 0, len(never_confirmed & confirmed)))

    sagas = await _keyed(dsns["orchestrator"], "SELECT order_id, status FROM sagas")
    saga_end = {
        "OrderConfirmed": "completed",
        "OrderRejected": "rejected",
        "OrderCancelled": "cancelled",
    }
    still_open = await sagas_open(dsns)
    rows.append(
        check(
            "sagas whose end differs from the order's",
            0,
            sum(1 for o, t in outcome.items() if sagas.get(o) != saga_end[t]),
        )
    )
    rows.append(
        Check(
            "sagas still open after their order ended",
            "0",
            f"{len(still_open)} {sorted(still_open.items())[:5] if still_open else ''}".strip(),
            not still_open,
        )
    )

    reservations = await _keyed(dsns["inventory"], "SELECT order_id, status FROM reservations")
    held = {o for o, s in reservations.items() if s == "reserved"}
    rows.append(
        check(
            "confirmed orders holding exactly one reservation",
            len(confirmed),
            len(confirmed & held),
        )
    )
    rows.append(check("reservations held by orders not confirmed", 0, len(held - confirmed)))

    payments = await _keyed(dsns["simulator"], "SELECT order_id, status FROM payments")
    answered = await _keyed(
        dsns["simulator"],
        "SELECT order_id, count(DISTINCT event_id) AS n FROM answers"
        " WHERE type = 'PaymentAuthorized' GROUP BY order_id",
    )
    rows.append(
        check(
            "confirmed orders with one authorized payment",
            len(confirmed),
            sum(1 for o in confirmed if payments.get(o) == "authorized" and answered.get(o) == 1),
        )
    )
    rows.append(
        check(
            "authorized payments of orders not confirmed",
            0,
            sum(1 for o, s in payments.items() if s == "authorized" and o not in confirmed),
        )
    )

    receipts = Counter(
        r["order_id"] for r in await _fetch(dsns["receipts"], "SELECT order_id FROM receipts")
    )
    rows.append(
        check(
            "confirmed orders with exactly one receipt",
            len(confirmed),
            sum(1 for o in confirmed if receipts.get(o) == 1),
        )
    )
    rows.append(check("receipts of orders not confirmed", 0, len(set(receipts) - confirmed)))

    # per SKU: what is held is what confirmed orders asked for; on hand is what came in
    wanted: dict[str, int] = defaultdict(int)
    for order_id in confirmed:
        for line in orjson.loads(placed[order_id])["lines"]:
            wanted[line["sku"]] += line["quantity"]
    stock = await _keyed(dsns["inventory"], "SELECT sku, on_hand, reserved FROM stock")
    rows.append(
        check(
            "SKUs where reserved ≠ confirmed quantities",
            0,
            sum(1 for sku, (_, reserved) in stock.items() if reserved != wanted.get(sku, 0)),
        )
    )
    rows.append(
        check(
            "SKUs where on hand ≠ seeded + received",
            0,
            sum(1 for sku, (on_hand, _) in stock.items() if on_hand != initial_stock.get(sku, 0)),
        )
    )

    rows += await _projection_checks(dsns, outcome, stock, wanted)
    rows += _dead_letter_checks(dead_letters, poison)
    return rows


async def _projection_checks(
    dsns: dict[str, str],
    outcome: dict[str, str],
    stock: dict[str, tuple[int, int]],
    wanted: dict[str, int],
) -> list[Check]:
    status_of = {
        "OrderConfirmed": "confirmed",
        "OrderRejected": "rejected",
        "OrderCancelled": "cancelled",
    }
    view = await _keyed(
        dsns["projection"], "SELECT order_id, status, version FROM view_orders.orders"
    )
    versions = await _keyed(
        dsns["checkout"], "SELECT stream_id, max(stream_version) AS v FROM events GROUP BY 1"
    )
    statuses = {o: status_of[t] for o, t in outcome.items()}
    differing = {
        o: (view.get(o), (statuses.get(o, "placed"), v))
        for o, v in versions.items()
        if view.get(o) != (statuses.get(o, "placed"), v)
    }
    named = sorted(differing.items())[:3]
    why = await _why_behind(dsns, [o for o, _ in named]) if differing else ""
    rows = [
        Check(
            "orders view ≠ checkout (status, version)",
            "0",
            # which, with (view, checkout) and where each of their events got to, so that a
            # failure says where to look
            f"{len(differing)} {named if differing else ''} {why}".strip(),
            not differing,
        )
    ]
    stock_view = await _keyed(
        dsns["projection"], "SELECT sku, on_hand, reserved, available FROM view_stock.stock"
    )
    rows.append(
        check(
            "stock view ≠ inventory (on hand, reserved, available)",
            0,
            sum(1 for sku, (h, r) in stock.items() if stock_view.get(sku) != (h, r, h - r)),
        )
    )
    sold = await _keyed(
        dsns["projection"],
        "SELECT l.sku, sum(l.quantity) AS q FROM view_sales.order_lines l"
        " JOIN view_sales.counted c USING (order_id) GROUP BY l.sku",
    )
    rows.append(
        check(
            "sales view ≠ confirmed quantities per SKU",
            dict(sorted(wanted.items())),
            dict(sorted(sold.items())),
        )
    )
    decided = Counter(
        r["outcome"]
        for r in await _fetch(dsns["projection"], "SELECT outcome FROM view_outcomes.decided")
    )
    rows.append(
        check(
            "outcomes view ≠ checkout's outcomes",
            dict(sorted(Counter(statuses.values()).items())),
            dict(sorted(decided.items())),
        )
    )
    return rows


_SENT = {True: "sent", False: "unsent", None: "no outbox row"}  # per event, from its outbox


async def _checkout_events(dsns: dict[str, str], orders: list[str]) -> list[asyncpg.Record]:
    """`orders`' events in checkout's stream, each with whether its outbox row was sent."""
    listed = ", ".join(f"'{o}'" for o in orders)  # our own uuids, not input
    return await _fetch(
        dsns["checkout"],
        "SELECT e.stream_id, e.stream_version, e.type, e.event_id,"
        " bool_or(o.sent_at IS NOT NULL) AS sent FROM events e"
        " LEFT JOIN outbox o ON o.event_id = e.event_id"
        f" WHERE e.stream_id IN ({listed}) GROUP BY 1, 2, 3, 4 ORDER BY 1, 2",
    )


async def _why_behind(dsns: dict[str, str], orders: list[str]) -> str:
    """Each of `orders`' events in checkout's stream, with how far it got: its outbox row sent
    (or not), and the orders view's inbox holding its id (applied) or not. An event sent and
    not applied was lost between Kafka and the view; one not sent never left checkout."""
    if not orders:
        return ""
    events = await _checkout_events(dsns, orders)
    applied = {
        r[0]
        for r in await _fetch(
            dsns["projection"],
            "SELECT event_id FROM view_orders.inbox WHERE event_id = ANY(ARRAY["
            + ", ".join(f"'{r['event_id']}'::uuid" for r in events)
            + "]::uuid[])",
        )
    }
    said: dict[str, list[str]] = defaultdict(list)
    for r in events:
        got = "applied" if r["event_id"] in applied else "NOT applied"
        said[r["stream_id"]].append(f"v{r['stream_version']} {r['type']} {_SENT[r['sent']]} {got}")
    return "; ".join(f"{o}: " + ", ".join(steps) for o, steps in said.items())


async def why_not_terminal(
    dsns: dict[str, str],
    orders: list[str],
    bootstrap: str,
    prefix: str,
    orchestrator_logs: Iterable[Path],
) -> str:
    """Where each of `orders` (acknowledged, not terminal) got to, so that one failed run says
    where to look: checkout's events and outbox, the order's records on checkout.events and
    the orchestrator group's committed offset and recorded saga progress on that partition,
    the saga's row, the reservation, and the orchestrator logs' lines naming the order."""
    if not orders:
        return ""
    topic = prefix + "checkout.events"
    listed = ", ".join(f"'{o}'" for o in orders)  # our own uuids, not input
    events = await _checkout_events(dsns, orders)
    on_topic: dict[str, list[str]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for r in await read_records(bootstrap, topic):
        key = (r.key or b"").decode(errors="replace")
        if key in orders:
            on_topic[key].append(f"{_header(r.headers, 'type')}@p{r.partition}:{r.offset}")
            partitions[key].add(r.partition)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(prefix + "leadline-orchestrator")
    finally:
        await admin.close()
    committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
    progress = await _keyed(
        dsns["orchestrator"],
        f"SELECT partition, next_offset FROM saga_progress WHERE topic = '{topic}'",
    )
    sagas = await _keyed(
        dsns["orchestrator"], f"SELECT order_id, status FROM sagas WHERE order_id IN ({listed})"
    )
    reserved = await _keyed(
        dsns["inventory"],
        f"SELECT order_id, status FROM reservations WHERE order_id IN ({listed})",
    )
    logs = {path.stem: path.read_text(errors="replace") for path in orchestrator_logs}
    said = []
    for order_id in orders:
        steps = [
            f"v{r['stream_version']} {r['type']} {_SENT[r['sent']]}"
            for r in events
            if r["stream_id"] == order_id
        ]
        where = [
            f"p{p}: committed {committed.get(p)}, progress {progress.get(p)}"
            for p in sorted(partitions[order_id])
        ]
        mentions = {name: text.count(order_id) for name, text in logs.items()}
        said.append(
            f"{order_id}: checkout [{', '.join(steps)}];"
            f" on {topic} {on_topic[order_id] or 'nothing'}"
            f" ({'; '.join(where)}); saga {sagas.get(order_id, 'none')}; reservation"
            f" {reserved.get(order_id, 'none')}; orchestrator log lines {mentions}"
        )
    skipped = {name: text.count("records skipped by the stream") for name, text in logs.items()}
    return " | ".join(said) + f" | stream skips repaired per orchestrator: {skipped}"


def _dead_letter_checks(
    dead_letters: dict[str, list[tuple[bytes | None, str, str]]], poison: list[Poison]
) -> list[Check]:
    """`dead_letters`: per catalogue topic, (value, reason, consumer) of each dead letter."""
    injected = {(p.topic, p.value) for p in poison}
    found = {(topic, value) for topic, letters in dead_letters.items() for value, _, _ in letters}
    per_consumer = Counter(
        (topic, value, consumer)
        for topic, letters in dead_letters.items()
        for value, _, consumer in letters
    )
    return [
        check("injected poison records dead-lettered", len(injected), len(injected & found)),
        check("dead letters that are not injected poison", 0, len(found - injected)),
        check(
            "dead letters without a reason",
            0,
            sum(1 for letters in dead_letters.values() for _, reason, _ in letters if not reason),
        ),
        Check(
            "poison dead-lettered twice by one consumer (a crash between the dead letter and"
            " the commit: at least once)",
            "reported",
            str(sum(n - 1 for n in per_consumer.values())),
            True,
        ),
    ]


async def read_dead_letters(
    bootstrap: str, prefix: str
) -> dict[str, list[tuple[bytes | None, str, str]]]:
    found: dict[str, list[tuple[bytes | None, str, str]]] = {}
    for topic in TOPICS:
        records = await read_records(bootstrap, prefix + topic.dead_letter)
        found[topic.name] = [
            (r.value, _header(r.headers, "dlq.reason"), _header(r.headers, "dlq.consumer"))
            for r in records
        ]
    return found


def _header(headers: Iterable[tuple[str, bytes]], name: str) -> str:
    return next((v.decode() for k, v in headers if k == name), "")
