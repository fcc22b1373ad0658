"""The secured profile's access control lists, made from the topic catalogue so that they cannot
drift from it. The broker denies whatever no ACL allows (`allow.everyone.if.no.acl.found=false`);
these allow exactly:

- every party WRITE on the topics it produces (the catalogue names one producer per topic);
- every party READ on the topics it consumes, and WRITE + CREATE on their dead-letter topics (it
  dead-letters there, and creates the one that is missing when it starts);
- every party READ on its consumer groups;
- the orchestrator its internal topics: faust's changelog and leader topics under its app id and
  the re-keyed `orchestrator.payments`, CREATE included, as it makes them before faust starts;
- the operator (`leadline` CLI and console): READ every topic and DESCRIBE every group (offsets,
  lag, tails, traces), WRITE the topics a dead letter may be re-driven to, READ the re-drive
  groups.

READ and WRITE imply DESCRIBE, and WRITE on any topic lets an idempotent producer get its
producer id, so nothing else is granted. The admin (infra scripts, tests) and the brokers are
super users in server.properties, never in an ACL.

    python -m shared.kafka.acls show [--prefix P]        the list, one line each
    python -m shared.kafka.acls apply --credentials DIR  the principals and ACLs, as the admin
    python -m shared.kafka.acls apply --passwords-from-env   (compose: KAFKA_PASSWORD_<NAME>)

`apply` is idempotent: a principal keeps the password in DIR/<name> (made on first use, mode
600); an ACL that exists already is left as it is. ACLs no longer generated are not removed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args

import typer

from schemas.catalogue import DEAD_LETTER_SUFFIX, TOPICS, Party
from shared.kafka.admin import security_from_env
from shared.kafka.security import KafkaSecurity

Resource = Literal["topic", "group"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "create", "describe"]

OPERATOR = "operator"
PRINCIPALS: tuple[str, ...] = (*get_args(Party), OPERATOR)

# each party's consumer groups, as its settings name them by default (a prefixed name: a family)
GROUPS: dict[str, tuple[tuple[str, Pattern], ...]] = {
    "checkout": (("checkout", "literal"),),
    "inventory": (("inventory", "literal"),),
    "receipts": (("receipts", "literal"),),
    "projection": (("projection.", "prefixed"),),  # one group per view
    "payment-provider": (("payment-provider-simulator", "literal"),),
}
# the orchestrator's group is its faust app id, under the topic prefix
ORCHESTRATOR_APP_ID = "leadline-orchestrator"
# its re-keyed copy of payments.events: an implementation detail, so not in the catalogue
ORCHESTRATOR_PAYMENTS = "orchestrator.payments"
REDRIVE_GROUPS = "leadline.redrive."  # shared/kafka/dead_letters.py `redrive_group`


@dataclass(frozen=True, order=True)
class Acl:
    """ALLOW `operation` on a resource to `User:principal`, from any host."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def __str__(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"User:{self.principal} {self.operation.upper()} {self.resource} {self.name}{star}"


def acls(prefix: str = "", orchestrator_app_id: str = ORCHESTRATOR_APP_ID) -> list[Acl]:
    """Every ACL of a deployment whose topics carry `prefix` (LEADLINE_TOPIC_PREFIX), sorted.
    The orchestrator's group and faust topics follow its app id under the prefix."""
    return sorted(set(_generated(prefix, orchestrator_app_id)))


def _generated(prefix: str, app_id: str) -> Iterator[Acl]:
    def topic(who: str, name: str, *ops: Operation, pattern: Pattern = "literal") -> Iterator[Acl]:
        return (Acl(who, "topic", name, pattern, op) for op in ops)

    for t in TOPICS:
        yield from topic(t.producer, prefix + t.name, "write")
        for who in t.consumers:
            yield from topic(who, prefix + t.name, "read")
            yield from topic(who, prefix + t.dead_letter, "write", "create")
    for party, groups in GROUPS.items():
        yield from (Acl(party, "group", name, pattern, "read") for name, pattern in groups)

    faust_id = prefix + app_id
    yield Acl("orchestrator", "group", faust_id, "literal", "read")
    yield from topic("orchestrator", f"{faust_id}-", "read", "write", "create", pattern="prefixed")
    payments = prefix + ORCHESTRATOR_PAYMENTS
    yield from topic("orchestrator", payments, "read", "write", "create")
    yield from topic("orchestrator", payments + DEAD_LETTER_SUFFIX, "write", "create")

    # a PREFIXED ACL needs a non-empty name; without a prefix, the wildcard: every topic
    everything: tuple[str, Pattern] = (prefix, "prefixed") if prefix else ("*", "literal")
    yield from topic(OPERATOR, everything[0], "read", pattern=everything[1])
    yield Acl(OPERATOR, "group", "*", "literal", "describe")
    yield Acl(OPERATOR, "group", REDRIVE_GROUPS, "prefixed", "read")
    for name in [t.name for t in TOPICS] + [ORCHESTRATOR_PAYMENTS]:
        yield from topic(OPERATOR, prefix + name, "write")


def allowed(
    rules: Iterable[Acl], principal: str, resource: Resource, name: str, operation: Operation
) -> bool:
    """Whether `rules` let `principal` do `operation` on a resource, as the broker decides it
    (READ and WRITE imply DESCRIBE). For tests and `show`; the broker is the authority."""
    implied = {"describe": {"describe", "read", "write"}}.get(operation, {operation})
    return any(
        rule.principal == principal
        and rule.resource == resource
        and rule.operation in implied
        and (
            rule.name == "*"
            or rule.name == name
            or (rule.pattern == "prefixed" and name.startswith(rule.name))
        )
        for rule in rules
    )


# ---------------------------------------------------------------- applying them to a cluster


def passwords(directory: Path, principals: Iterable[str] = PRINCIPALS) -> dict[str, str]:
    """Each principal's password from `directory`/<name>; a missing one is made (random, mode
    600), so a cluster's principals keep theirs from one `apply` to the next."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    found: dict[str, str] = {}
    for name in principals:
        path = directory / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24) + "\n")
        found[name] = path.read_text().strip()
    return found


def password_variable(principal: str) -> str:
    """Where compose hands `principal`'s password over: KAFKA_PASSWORD_PAYMENT_PROVIDER, ..."""
    return "KAFKA_PASSWORD_" + principal.upper().replace("-", "_")


def passwords_from_env(
    environ: Mapping[str, str], principals: Iterable[str] = PRINCIPALS
) -> dict[str, str]:
    """Each principal's password from its `password_variable`; KeyError names the missing."""
    missing = [password_variable(p) for p in principals if not environ.get(password_variable(p))]
    if missing:
        raise KeyError(f"no password in {', '.join(missing)}")
    return {p: environ[password_variable(p)] for p in principals}


def apply(
    bootstrap: str,
    admin: KafkaSecurity,
    rules: Iterable[Acl],
    credentials: dict[str, str],
    timeout: float = 30.0,
) -> None:
    """Create or update every principal's SCRAM credentials and create every ACL, as the
    `admin` principal (a super user). Raises the broker's error for anything it refused.

    Through librdkafka's admin client: aiokafka has no ACL or SCRAM API."""
    # confluent-kafka is the simulator's client already; imported here, so the generator above
    # (and everything that only reads the list) never loads librdkafka
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported implicitly
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    client = AdminClient({"bootstrap.servers": bootstrap, **admin.librdkafka()})
    mechanism = ScramMechanism[admin.mechanism.replace("-", "_")]
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, ScramCredentialInfo(mechanism, 8192), pw.encode())
        for name, pw in sorted(credentials.items())
    ]
    for future in client.alter_user_scram_credentials(upserts, request_timeout=timeout).values():
        future.result(timeout)
    bindings = [
        AclBinding(
            ResourceType[rule.resource.upper()],
            rule.name,
            ResourcePatternType[rule.pattern.upper()],
            f"User:{rule.principal}",
            "*",
            AclOperation[rule.operation.upper()],
            AclPermissionType.ALLOW,
        )
        for rule in sorted(set(rules))
    ]
    for future in client.create_acls(bindings, request_timeout=timeout).values():
        future.result(timeout)


cli = typer.Typer(add_completion=False, help="The secured profile's principals and ACLs.")
Prefix = Annotated[str, typer.Option(envvar="LEADLINE_TOPIC_PREFIX", help="topic prefix")]


@cli.command("show")
def show_cmd(prefix: Prefix = "") -> None:
    """Print every generated ACL, one per line."""
    for rule in acls(prefix):
        typer.echo(str(rule))


@cli.command("apply")
def apply_cmd(
    credentials: Annotated[
        Path | None, typer.Option(help="a password file per principal (made when missing)")
    ] = None,
    passwords_in_env: Annotated[
        bool, typer.Option("--passwords-from-env", help="KAFKA_PASSWORD_<NAME> instead")
    ] = False,
    bootstrap: Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS")] = "127.0.0.1:9092",
    prefix: Prefix = "",
    timeout: Annotated[
        float, typer.Option(min=1, help="seconds each step may wait for Kafka to answer")
    ] = 120.0,
) -> None:
    """Create the principals and ACLs, as the admin principal of the environment
    (KAFKA_SECURITY_PROTOCOL=SASL_SSL, KAFKA_SASL_USERNAME, ...)."""
    admin = security_from_env()
    if not admin.secured:
        raise typer.BadParameter("needs KAFKA_SECURITY_PROTOCOL=SASL_SSL and the admin principal")
    if (credentials is None) == (not passwords_in_env):
        raise typer.BadParameter("give either --credentials DIR or --passwords-from-env")
    found = passwords(credentials) if credentials else passwords_from_env(os.environ)
    rules = acls(prefix)
    apply(bootstrap, admin, rules, found, timeout=timeout)
    typer.echo(f"principals: {', '.join(PRINCIPALS)}; ACLs: {len(rules)}")


if __name__ == "__main__":
    cli()
