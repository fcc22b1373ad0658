"""The secured profile's ACLs, generated from the topic catalogue: deny by default, each party
writing only what it produces and reading only what it consumes, and the catalogue's word on who
consumes what checked against the services' own subscription tables, so neither can drift."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from schemas.catalogue import TOPICS, Party
from services.checkout.consumers import subscriptions as checkout_subscriptions
from services.checkout.settings import CheckoutSettings
from services.inventory.consumers import Topics as InventoryTopics
from services.inventory.consumers import subscriptions as inventory_subscriptions
from services.inventory.settings import InventorySettings
from services.orchestrator.consumers import Topics as OrchestratorTopics
from services.orchestrator.settings import OrchestratorSettings
from services.projection.consumers import VIEWS
from services.projection.settings import ProjectionSettings
from services.receipts.settings import ReceiptsSettings
from shared.kafka.acls import (
    GROUPS,
    OPERATOR,
    ORCHESTRATOR_APP_ID,
    ORCHESTRATOR_PAYMENTS,
    PRINCIPALS,
    REDRIVE_GROUPS,
    Acl,
    acls,
    allowed,
    password_variable,
    passwords,
    passwords_from_env,
)
from shared.kafka.dead_letters import redrive_group
from simulators.payment_provider.consumers import Topics as ProviderTopics
from simulators.payment_provider.settings import SimulatorSettings

PREFIX = "run-1."


def default(settings: type[object], field: str) -> str:
    value = settings.model_fields[field].default  # type: ignore[attr-defined]
    assert isinstance(value, str)
    return value


def consumed() -> dict[str, set[str]]:
    """What each party's code subscribes to, as catalogue names (from the wiring itself)."""
    checkout = checkout_subscriptions(CheckoutSettings(database_url="postgresql://x/y"))
    inventory = inventory_subscriptions(InventoryTopics.with_prefix(""))
    orchestrator = OrchestratorTopics.with_prefix("")
    provider = ProviderTopics.with_prefix("")
    return {
        "checkout": {s.topic for s in checkout},
        "inventory": {s.topic for s in inventory},
        # receipts' subscription table takes its topics from bootstrap.py: these two
        "receipts": {"checkout.events", "receipts.commands"},
        "projection": {t for view in VIEWS.values() for t in view.topics},
        "orchestrator": set(orchestrator.sources) - {orchestrator.payments}
        | {orchestrator.payments_upstream},
        "payment-provider": {provider.requests},
    }


def test_every_topic_names_its_producer_and_consumers() -> None:
    for t in TOPICS:
        assert t.producer, t.name
        assert t.consumers, t.name
        assert len(set(t.consumers)) == len(t.consumers), t.name


def test_the_catalogue_says_who_consumes_what_the_services_subscribe_to() -> None:
    said = {party: {t.name for t in TOPICS if party in t.consumers} for party in consumed()}
    assert said == consumed()


def test_the_receipts_wiring_reads_the_two_topics_the_test_names() -> None:
    source = (Path(__file__).parents[2] / "services/receipts/bootstrap.py").read_text()
    assert 'settings.topic("checkout.events"), settings.topic("receipts.commands")' in source


def test_each_party_writes_exactly_the_topics_it_produces_and_its_dead_letters() -> None:
    rules = acls(PREFIX)
    for party in ("checkout", "inventory", "receipts", "projection", "payment-provider"):
        written = {r.name for r in rules if r.principal == party and r.operation == "write"}
        produced = {PREFIX + t.name for t in TOPICS if t.producer == party}
        dead_letters = {PREFIX + t.dead_letter for t in TOPICS if party in t.consumers}
        assert written == produced | dead_letters, party


def test_a_service_may_not_write_another_partys_topic() -> None:
    rules = acls(PREFIX)
    for t in TOPICS:
        for party in PRINCIPALS:
            may = allowed(rules, party, "topic", PREFIX + t.name, "write")
            assert may == (party in (t.producer, OPERATOR)), (party, t.name)
    assert not allowed(rules, "inventory", "topic", PREFIX + "checkout.commands", "write")


def test_a_party_reads_only_what_it_consumes() -> None:
    rules = acls(PREFIX)
    for t in TOPICS:
        for party in set(PRINCIPALS) - {OPERATOR}:
            may = allowed(rules, party, "topic", PREFIX + t.name, "read")
            assert may == (party in t.consumers), (party, t.name)


def test_the_payment_provider_touches_only_its_upstream_topics() -> None:
    touched = {r.name for r in acls(PREFIX) if r.principal == "payment-provider"}
    topics = {n.removeprefix(PREFIX) for n in touched if n.startswith(PREFIX)}
    assert topics == {"payments.requests", "payments.events", "payments.requests.dlq"}
    assert touched - {PREFIX + t for t in topics} == {default(SimulatorSettings, "consumer_group")}


def test_every_group_is_its_own_partys() -> None:
    rules = acls(PREFIX)
    groups = {
        "checkout": default(CheckoutSettings, "consumer_group"),
        "inventory": default(InventorySettings, "consumer_group"),
        "receipts": default(ReceiptsSettings, "consumer_group"),
        "orchestrator": PREFIX + default(OrchestratorSettings, "app_id"),
        "payment-provider": default(SimulatorSettings, "consumer_group"),
    }
    groups.update(
        {
            f"projection/{view}": VIEWS[view].consumer_name(
                default(ProjectionSettings, "consumer_group")
            )
            for view in VIEWS
        }
    )
    for owner, group in groups.items():
        party = owner.split("/")[0]
        readers = {p for p in PRINCIPALS if allowed(rules, p, "group", group, "read")}
        assert readers == {party}, (owner, group, readers)
    assert default(OrchestratorSettings, "app_id") == ORCHESTRATOR_APP_ID
    assert "orchestrator" not in GROUPS  # its group follows the prefix: made in acls()


def test_the_orchestrator_may_make_and_use_its_own_topics() -> None:
    rules = acls(PREFIX)
    faust_id = PREFIX + ORCHESTRATOR_APP_ID
    own = [f"{faust_id}-sagas-changelog", f"{faust_id}-__assignor-__leader"]
    assert OrchestratorTopics.with_prefix(PREFIX).payments == PREFIX + ORCHESTRATOR_PAYMENTS
    own.append(PREFIX + ORCHESTRATOR_PAYMENTS)
    for name in own:
        for op in ("read", "write", "create"):
            assert allowed(rules, "orchestrator", "topic", name, op), (name, op)
            assert not allowed(rules, "checkout", "topic", name, op)


def test_no_service_may_create_a_catalogue_topic() -> None:
    rules = acls(PREFIX)
    for t in TOPICS:
        assert not any(allowed(rules, p, "topic", PREFIX + t.name, "create") for p in PRINCIPALS)


def test_the_operator_reads_everything_and_writes_only_for_redrive() -> None:
    rules = acls(PREFIX)
    for t in TOPICS:
        for name in (t.name, t.dead_letter):
            assert allowed(rules, OPERATOR, "topic", PREFIX + name, "read")
        assert allowed(rules, OPERATOR, "topic", PREFIX + t.name, "write")
        assert not allowed(rules, OPERATOR, "topic", PREFIX + t.dead_letter, "write")
    assert allowed(rules, OPERATOR, "group", "checkout", "describe")
    assert not allowed(rules, OPERATOR, "group", "checkout", "read")
    assert allowed(rules, OPERATOR, "group", redrive_group(PREFIX + "checkout.events.dlq"), "read")
    assert redrive_group("x").startswith(REDRIVE_GROUPS)
    assert not [r for r in rules if r.principal == OPERATOR and r.operation == "create"]


@pytest.mark.parametrize("prefix", ["", PREFIX])
def test_every_rule_stays_under_the_prefix(prefix: str) -> None:
    for rule in acls(prefix):
        if rule.resource == "topic" and rule.name != "*":
            assert rule.name.startswith(prefix), rule
        # Kafka refuses a PREFIXED pattern with an empty name: the wildcard stands for it
        assert rule.name, rule
    wildcards = [r for r in acls(prefix) if r.name == "*"]
    assert {(r.principal, r.resource) for r in wildcards} <= {
        (OPERATOR, "topic"),
        (OPERATOR, "group"),
    }


def test_every_party_is_a_principal_and_the_list_is_stable() -> None:
    parties: set[Party] = {p for t in TOPICS for p in (t.producer, *t.consumers)}
    assert parties | {OPERATOR} == set(PRINCIPALS)
    assert acls(PREFIX) == sorted(set(acls(PREFIX)))
    assert str(Acl("inventory", "topic", "p.", "prefixed", "read")) == (
        "User:inventory READ topic p.*"
    )


def test_passwords_are_made_once_and_readable_by_their_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "credentials"
    made = passwords(folder, ["checkout", "inventory"])
    assert len(set(made.values())) == 2
    assert all(len(p) >= 24 for p in made.values())
    assert stat.S_IMODE((folder / "checkout").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert passwords(folder, ["checkout", "inventory"]) == made


def test_compose_hands_each_password_over_in_its_own_variable() -> None:
    environ = {password_variable(p): f"pw-{p}" for p in PRINCIPALS}
    assert password_variable("payment-provider") == "KAFKA_PASSWORD_PAYMENT_PROVIDER"
    assert passwords_from_env(environ) == {p: f"pw-{p}" for p in PRINCIPALS}
    del environ["KAFKA_PASSWORD_OPERATOR"]
    with pytest.raises(KeyError, match="KAFKA_PASSWORD_OPERATOR"):
        passwords_from_env(environ)
