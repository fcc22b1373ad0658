"""The aggregate base and the repository, on the in-memory twin.

The test aggregate's events live in a registry of their own, so the contract registry (and the
JSON Schema files generated from it) never sees them.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.checkout.v1 import OrderConfirmed
from schemas.registry import Message, Registry
from shared.aggregate import Aggregate, DomainError
from shared.memory import MemoryDatabase, MemoryUnitOfWork
from shared.ports import ConcurrencyError, Snapshot
from shared.repository import EventSourcedRepository, NotFound

REGISTRY = Registry()


@REGISTRY.register
class AccountOpened(Message):
    TYPE = "AccountOpened"
    VERSION = 1
    owner: str


@REGISTRY.register
class Deposited(Message):
    TYPE = "Deposited"
    VERSION = 1
    cents: int


@REGISTRY.register
class Withdrawn(Message):
    TYPE = "Withdrawn"
    VERSION = 1
    cents: int


@REGISTRY.register
class AccountClosed(Message):
    TYPE = "AccountClosed"
    VERSION = 1


class InvalidAmount(DomainError):
    pass


class InsufficientFunds(DomainError):
    pass


class AccountIsClosed(DomainError):
    pass


class Account(Aggregate):
    SNAPSHOT_SCHEMA_VERSION = 1

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0
        self.movements: list[int] = []
        self.closed = False

    @classmethod
    def open(cls, id: str, owner: str) -> Self:
        account = cls(id)
        account._record(AccountOpened(owner=owner))
        return account

    def deposit(self, cents: int) -> None:
        self.ensure_open()
        self.ensure_positive(cents)
        self._record(Deposited(cents=cents))

    def withdraw(self, cents: int) -> None:
        self.ensure_open()
        self.ensure_positive(cents)
        if cents > self.balance:
            raise InsufficientFunds(f"balance {self.balance} < {cents}")
        self._record(Withdrawn(cents=cents))

    def close(self) -> None:
        self.ensure_open()
        self._record(AccountClosed())

    def ensure_open(self) -> None:
        if self.closed:
            raise AccountIsClosed(self.id)

    def ensure_positive(self, cents: int) -> None:
        if cents <= 0:
            raise InvalidAmount(str(cents))

    def apply(self, event: Message) -> None:
        match event:
            case AccountOpened(owner=owner):
                self.owner = owner
            case Deposited(cents=cents):
                self.balance += cents
                self.movements.append(cents)
            case Withdrawn(cents=cents):
                self.balance -= cents
                self.movements.append(-cents)
            case AccountClosed():
                self.closed = True
            case _:
                super().apply(event)

    def snapshot_state(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "balance": self.balance,
            "movements": self.movements,
            "closed": self.closed,
        }

    @classmethod
    def from_snapshot(cls, id: str, version: int, state: dict[str, Any]) -> Self:
        account = cls(id)
        account.version = version
        account.owner = state["owner"]
        account.balance = state["balance"]
        account.movements = list(state["movements"])
        account.closed = state["closed"]
        return account


def accounts(uow: MemoryUnitOfWork, every: int = 50) -> EventSourcedRepository[Account]:
    return EventSourcedRepository(Account, uow.events, snapshot_every=every, registry=REGISTRY)


def state(a: Account) -> dict[str, Any]:
    return {"id": a.id, "version": a.version, **a.snapshot_state()}


commands = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(-3, 100)),
        st.tuples(st.just("withdraw"), st.integers(-3, 150)),
        st.tuples(st.just("close"), st.just(0)),
    ),
    max_size=30,
)


def execute(account: Account, command: tuple[str, int]) -> None:
    """Run one command; a refused one must leave the aggregate exactly as it was."""
    name, cents = command
    before, pending = state(account), list(account.pending)
    try:
        if name == "deposit":
            account.deposit(cents)
        elif name == "withdraw":
            account.withdraw(cents)
        else:
            account.close()
    except DomainError:
        assert state(account) == before
        assert account.pending == pending


def live_account(cmds: list[tuple[str, int]]) -> Account:
    account = Account.open("acc-1", "ada")
    for command in cmds:
        execute(account, command)
    return account


@given(commands)
def test_rebuilding_from_the_recorded_events_gives_the_live_state(
    cmds: list[tuple[str, int]],
) -> None:
    live = live_account(cmds)
    rebuilt = Account.from_history(live.id, live.pending)
    assert state(rebuilt) == state(live)
    assert rebuilt.pending == []
    assert live.balance >= 0  # the invariant held along every path


@given(commands, st.data())
def test_snapshot_plus_tail_gives_the_live_state(
    cmds: list[tuple[str, int]], data: st.DataObject
) -> None:
    live = live_account(cmds)
    split = data.draw(st.integers(1, len(live.pending)))
    head = Account.from_history(live.id, live.pending[:split])
    restored = Account.from_snapshot(live.id, head.version, head.snapshot_state())
    restored.replay(live.pending[split:])
    assert state(restored) == state(live)


@settings(max_examples=40, deadline=None)
@given(commands, st.integers(1, 30), st.integers(1, 5))
def test_saved_and_loaded_through_the_repository_gives_the_live_state(
    cmds: list[tuple[str, int]], batch: int, every: int
) -> None:
    async def scenario() -> None:
        db = MemoryDatabase()
        live = Account.open("acc-1", "ada")
        history = list(live.pending)
        async with MemoryUnitOfWork(db) as uow:
            await accounts(uow, every).save(live)
        for i in range(0, len(cmds), batch):
            async with MemoryUnitOfWork(db) as uow:
                repo = accounts(uow, every)
                account = await repo.load("acc-1")
                assert state(account) == state(live)
                for command in cmds[i : i + batch]:
                    execute(account, command)
                    execute(live, command)
                history += account.pending
                assert await repo.save(account) == account.version
            live.mark_committed()
        async with MemoryUnitOfWork(db) as uow:
            repo = accounts(uow, every)
            assert state(await repo.load("acc-1")) == state(live)
            for version in range(1, live.version + 1):
                past = await repo.load("acc-1", up_to_version=version)
                assert state(past) == state(Account.from_history("acc-1", history[:version]))

    asyncio.run(scenario())


def test_invariant_violations_raise_domain_errors_and_record_nothing() -> None:
    account = Account.open("acc-1", "ada")
    account.deposit(10)
    with pytest.raises(InsufficientFunds):
        account.withdraw(11)
    with pytest.raises(InvalidAmount):
        account.deposit(0)
    account.close()
    with pytest.raises(AccountIsClosed):
        account.deposit(5)
    assert [type(e) for e in account.pending] == [AccountOpened, Deposited, AccountClosed]
    assert (account.version, account.balance) == (3, 10)


def test_pending_events_and_version_bookkeeping() -> None:
    account = Account.open("acc-1", "ada")
    account.deposit(7)
    assert account.version == 2
    assert account.pending == [AccountOpened(owner="ada"), Deposited(cents=7)]
    assert account.mark_committed() == [AccountOpened(owner="ada"), Deposited(cents=7)]
    assert (account.pending, account.version) == ([], 2)
    account.withdraw(2)
    assert (account.pending, account.version) == ([Withdrawn(cents=2)], 3)


def test_an_event_without_a_branch_is_refused() -> None:
    with pytest.raises(TypeError, match="no branch for OrderConfirmed"):
        Account("acc-1").apply(OrderConfirmed(order_id="o-1"))


async def test_save_appends_pending_events_and_returns_the_new_version() -> None:
    db = MemoryDatabase()
    account = Account.open("acc-1", "ada")
    account.deposit(5)
    ids = [uuid.uuid4(), uuid.uuid4()]
    async with MemoryUnitOfWork(db) as uow:
        repo = accounts(uow)
        assert await repo.save(account, metadata={"correlation_id": "c-1"}, event_ids=ids) == 2
        assert account.pending == []
        assert await repo.save(account) == 2  # nothing pending: nothing appended
    stored = db.streams["acc-1"]
    assert [e.event_id for e in stored] == ids
    assert [(e.type, e.version, e.payload) for e in stored] == [
        ("AccountOpened", 1, {"owner": "ada"}),
        ("Deposited", 1, {"cents": 5}),
    ]
    assert all(e.metadata == {"correlation_id": "c-1"} for e in stored)


async def test_save_refuses_a_wrong_number_of_event_ids() -> None:
    account = Account.open("acc-1", "ada")
    async with MemoryUnitOfWork(MemoryDatabase()) as uow:
        with pytest.raises(ValueError, match="1 pending"):
            await accounts(uow).save(account, event_ids=[])


async def test_a_stale_copy_cannot_be_saved() -> None:
    db = MemoryDatabase()
    async with MemoryUnitOfWork(db) as uow:
        await accounts(uow).save(Account.open("acc-1", "ada"))
    async with MemoryUnitOfWork(db) as uow:
        first = await accounts(uow).load("acc-1")
    async with MemoryUnitOfWork(db) as uow:
        second = await accounts(uow).load("acc-1")
    first.deposit(1)
    second.deposit(2)
    async with MemoryUnitOfWork(db) as uow:
        await accounts(uow).save(first)
    with pytest.raises(ConcurrencyError):
        async with MemoryUnitOfWork(db) as uow:
            await accounts(uow).save(second)
    assert [e.payload for e in db.streams["acc-1"][1:]] == [{"cents": 1}]


async def test_snapshots_are_taken_when_a_multiple_of_n_is_crossed() -> None:
    db = MemoryDatabase()
    account = Account.open("acc-1", "ada")
    for step in ([1], [2, 3], [4], [5, 6, 7, 8], [9]):
        for cents in step:
            account.deposit(cents)
        async with MemoryUnitOfWork(db) as uow:
            await accounts(uow, 3).save(account)
    # versions after each save: 2, 4, 5, 9, 10 -> crossings at 4 (3), 9 (6 and 9)
    snapshots = db.snapshots["acc-1"]
    assert [s.stream_version for s in snapshots] == [4, 9]
    assert snapshots[-1].schema_version == Account.SNAPSHOT_SCHEMA_VERSION
    assert snapshots[-1].state["balance"] == sum(range(1, 9))


async def test_load_starts_from_the_snapshot_unless_its_schema_version_differs() -> None:
    db = MemoryDatabase()
    account = Account.open("acc-1", "ada")
    account.deposit(10)
    async with MemoryUnitOfWork(db) as uow:
        repo = accounts(uow, 2)
        await repo.save(account)
    # A doctored snapshot proves which path a load took.
    marker = {**account.snapshot_state(), "owner": "from-snapshot"}
    async with MemoryUnitOfWork(db) as uow:
        await uow.events.save_snapshot(
            Snapshot("acc-1", 2, Account.SNAPSHOT_SCHEMA_VERSION, marker, _now())
        )
    async with MemoryUnitOfWork(db) as uow:
        loaded = await accounts(uow).load("acc-1")
    assert (loaded.owner, loaded.version, loaded.balance) == ("from-snapshot", 2, 10)

    async with MemoryUnitOfWork(db) as uow:
        await uow.events.save_snapshot(Snapshot("acc-1", 2, 99, {"shape": "unknown"}, _now()))
    async with MemoryUnitOfWork(db) as uow:
        replayed = await accounts(uow).load("acc-1")
    assert (replayed.owner, replayed.version, replayed.balance) == ("ada", 2, 10)


async def test_load_as_of_a_time_ignores_a_snapshot_taken_after_it() -> None:
    db = MemoryDatabase()
    account = Account.open("acc-1", "ada")
    async with MemoryUnitOfWork(db) as uow:
        await accounts(uow, 2).save(account)
    account.deposit(10)
    async with MemoryUnitOfWork(db) as uow:
        await accounts(uow, 2).save(account)
    opened_at = db.streams["acc-1"][0].recorded_at
    async with MemoryUnitOfWork(db) as uow:
        repo = accounts(uow)
        then = await repo.load("acc-1", as_of=opened_at)
        now = await repo.load("acc-1", as_of=db.streams["acc-1"][1].recorded_at)
        with pytest.raises(NotFound):
            await repo.load("acc-1", as_of=opened_at - timedelta(microseconds=1))
    assert db.snapshots["acc-1"][0].stream_version == 2
    assert (then.version, then.balance) == (1, 0)
    assert (now.version, now.balance) == (2, 10)


async def test_loading_an_empty_stream_raises_not_found() -> None:
    async with MemoryUnitOfWork(MemoryDatabase()) as uow:
        with pytest.raises(NotFound):
            await accounts(uow).load("nobody")


def _now() -> datetime:
    return datetime.now(UTC)
