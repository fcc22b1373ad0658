"""The console's pages, as markup: the layout every page shares, signing in, and the overview.
What the CLI prints as tables, laid out for a browser with links between the pages
(`saga_pages`, `letter_pages`). Each takes what `panes` and the CLI's modules read, a
`Problem` standing in for any part that could not be read."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from services.cli.console.markup import Safe, ago, document, el, table, when
from services.cli.console.panes import KafkaView, Outbox, Overview, Problem
from services.cli.console.session import CSRF_FIELD, Session
from services.cli.settings import CliSettings

# the orchestrator's statuses in the order a saga meets them; one it adds later comes last
STATUS_ORDER = (
    "reserving",
    "paying",
    "confirming",
    "receipting",
    "rejecting",
    "cancelling",
    "completed",
    "rejected",
    "cancelled",
    "failed",
)


def problem(p: Problem) -> Safe:
    return el("div", p.message, class_="problem", role="alert")


def notice(text: str) -> Safe:
    return el("div", text, class_="notice", role="status")


def saga_href(order_id: str) -> str:
    return f"/sagas/{quote(order_id, safe='')}"


def letter_href(letter_id: str, *, tail: str = "") -> str:
    return f"/dead-letters/{quote(letter_id, safe=':')}{tail}"


def status(name: str) -> Safe:
    return el("span", name, class_=f"status {name}")


def _by_status(counts: dict[str, int]) -> list[tuple[str, int]]:
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    return sorted(counts.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def counts_strip(counts: dict[str, int], current: str | None = None) -> Safe:
    """One tile per status with its count, each a link to the sagas in it; `all` first."""
    tiles = [("all", sum(counts.values()), "/sagas")] + [
        (s, n, f"/sagas?{urlencode({'state': s})}") for s, n in _by_status(counts)
    ]
    return el(
        "ul",
        [
            el(
                "li",
                el(
                    "a",
                    el("span", n, class_="n"),
                    el("span", s, class_="state"),
                    href=href,
                    class_="current" if s == (current or "all") else None,
                ),
                data_state=s,
            )
            for s, n, href in tiles
        ],
        class_="counts",
    )


def layout(title: str, body: Safe, session: Session | None, settings: CliSettings) -> str:
    nav = el("nav")
    if session is not None:
        nav = el(
            "nav",
            el("a", "Overview", href="/"),
            el("a", "Sagas", href="/sagas"),
            el("a", "Dead letters", href="/dead-letters"),
            el(
                "span",
                el("span", f"signed in as {session.principal.subject}"),
                el(
                    "form",
                    el("input", type="hidden", name=CSRF_FIELD, value=session.csrf),
                    el("button", "Sign out", type="submit", class_="quiet"),
                    method="post",
                    action="/logout",
                ),
                class_="who",
            ),
        )
    prefix = settings.topic_prefix or "(none)"
    footer = (
        f"Kafka {settings.kafka_bootstrap_servers} · topic prefix {prefix} · "
        f"rendered {when(datetime.now(UTC))}"
    )
    return document(title, nav, body, footer)


def login(message: str, next_path: str) -> Safe:
    return el(
        "section",
        problem(Problem(message, 401)) if message else "",
        el("p", "The console is for operators: sign in with a token that has the admin scope."),
        el(
            "form",
            el("input", type="hidden", name="next", value=next_path),
            el(
                "label",
                "Admin token",
                el(
                    "input",
                    type="password",
                    name="token",
                    id="token",
                    autocomplete="off",
                    required=True,
                ),
            ),
            el("div", el("button", "Sign in", type="submit"), class_="actions"),
            method="post",
            action="/login",
        ),
        el(
            "p",
            "A local one: ",
            el("code", "python -m shared.auth mint --sub you --scope admin"),
            class_="empty",
        ),
        class_="login",
    )


def refused(message: str) -> Safe:
    return el(
        "section",
        problem(Problem(f"Refused: {message}. Nothing was done.", 403)),
        el("p", el("a", "Back to the overview", href="/")),
    )


def overview(o: Overview) -> Safe:
    sagas = problem(o.counts) if isinstance(o.counts, Problem) else counts_strip(o.counts)
    return Safe(
        el("section", el("h2", "Sagas by state"), sagas, id="sagas")
        + _kafka(o.kafka)
        + el("section", el("h2", "Outbox backlog per service"), _outboxes(o.outboxes), id="outbox")
    )


def _kafka(view: KafkaView | Problem) -> Safe:
    if isinstance(view, Problem):
        return el("section", el("h2", "Consumer lag per group"), problem(view), id="lag")
    lag = table(
        ["group", "lag", "by topic"],
        [
            [
                g.group,
                el("span", g.total, class_="lagging" if g.total else None),
                ", ".join(f"{t} {n}" for t, n in sorted(g.lag.items())),
            ]
            for g in view.groups
        ],
        empty="No consumer group has committed an offset on these topics.",
        numeric=frozenset({1}),
        id="lag-table",
    )
    letters = table(
        ["dead-letter topic", "records kept"],
        [
            [el("a", t, href=f"/dead-letters?{urlencode({'topic': t})}"), n]
            for t, n in sorted(view.dead_letters.items())
        ],
        empty="No dead-letter topic on the broker.",
        numeric=frozenset({1}),
    )
    return Safe(
        el(
            "section",
            el("h2", "Consumer lag per group"),
            el("p", f"Over the {view.topics} catalogue topics the broker has.", class_="empty"),
            lag,
            id="lag",
        )
        + el("section", el("h2", "Dead letters"), letters, id="dead-letters")
    )


def _outboxes(found: list[Outbox]) -> Safe:
    now = datetime.now(UTC)
    rows: list[list[object]] = []
    for o in found:
        b, database = o.found, el("span", o.database, class_="mono wrap")
        if isinstance(b, Problem):
            rows.append([o.service, database, "—", "—", "—", el("span", b.message, class_="bad")])
        elif b.pending is None:
            rows.append([o.service, database, "—", "—", "—", "no outbox in this database"])
        else:
            parked = el("span", b.parked, class_="lagging" if b.parked else None)
            rows.append([o.service, database, b.pending, ago(b.oldest, now), parked, ""])
    return table(
        ["service", "database", "pending", "oldest pending", "parked", "note"],
        rows,
        empty="No services configured.",
        numeric=frozenset({2, 4}),
        id="outbox-table",
    )
