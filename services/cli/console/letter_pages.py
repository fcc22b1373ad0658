"""The dead-letter pages: the list with its filters, one dead letter with why it failed and
the record itself, and the page that asks before a re-drive (the only form that changes
anything, so the only one carrying the CSRF token besides signing out)."""

from __future__ import annotations

from schemas.catalogue import TOPICS
from services.cli.console.markup import Safe, el, fields, table, when
from services.cli.console.pages import letter_href, notice, problem
from services.cli.console.panes import Problem
from services.cli.console.session import CSRF_FIELD, Session
from services.cli.dlq import Letter
from services.cli.render import json_text
from services.cli.settings import CliSettings
from shared.kafka.dead_letters import Reason


def letter_filters(topic: str, reason: str, since: str, until: str) -> Safe:
    def select(name: str, chosen: str, options: list[str], label: str) -> Safe:
        return el(
            "label",
            label,
            el(
                "select",
                el("option", "all", value=""),
                [el("option", o, value=o, selected=o == chosen) for o in options],
                name=name,
            ),
        )

    def text(name: str, value: str, label: str) -> Safe:
        return el("label", label, el("input", type="text", name=name, value=value, size=22))

    return el(
        "form",
        select("topic", topic, [t.dead_letter for t in TOPICS], "dead-letter topic"),
        select("reason", reason, [r.value for r in Reason], "reason"),
        text("since", since, "since (30m, 2h, or ISO time)"),
        text("until", until, "until"),
        el("button", "Filter", type="submit"),
        method="get",
        action="/dead-letters",
        class_="filters",
    )


def letters(
    filters: Safe, found: list[Letter] | Problem, settings: CliSettings, limit: int
) -> Safe:
    shown = problem(found) if isinstance(found, Problem) else _letters(found, settings, limit)
    return Safe(el("section", filters) + el("section", el("h2", "Dead letters found"), shown))


def _letters(found: list[Letter], settings: CliSettings, limit: int) -> Safe:
    rows: list[list[object]] = []
    for item in found:
        d = item.letter
        error = d.error.splitlines()[0] if d.error else ""
        rows.append(
            [
                el("a", item.id, href=letter_href(item.id), class_="mono"),
                when(item.at),
                d.reason,
                d.consumer,
                item.origin(settings),
                item.seen.type or "—",
                error[:160],
                el("a", "Re-drive…", href=letter_href(item.id, tail="/redrive")),
            ]
        )
    more = f"The first {limit} shown: narrow the filters." if len(found) >= limit else ""
    return Safe(
        table(
            ["id", "failed at", "reason", "consumer", "origin", "type", "error", ""],
            rows,
            empty="No dead letter matches.",
            id="letter-table",
        )
        + (el("p", more, class_="empty") if more else "")
    )


def _letter_fields(item: Letter, settings: CliSettings) -> Safe:
    d, seen = item.letter, item.seen
    return fields(
        [
            ("id", el("span", item.id, class_="mono")),
            ("failed at", when(item.at)),
            ("reason", el("strong", d.reason)),
            ("consumer", d.consumer),
            ("origin", item.origin(settings)),
            ("key", seen.key),
            ("event id", d.event_id),
            ("type", seen.type),
        ]
    )


def _text(value: bytes | None) -> str:
    return "" if value is None else bytes(value).decode(errors="replace")


def letter(item: Letter, settings: CliSettings, redriven: bool) -> Safe:
    d, seen = item.letter, item.seen
    if seen.envelope is not None:
        record = el("pre", json_text(seen.envelope.model_dump(mode="json")))
    else:
        value = "null (a tombstone)" if seen.value is None else seen.text[:4000]
        record = Safe(el("p", seen.error or "", class_="bad") + el("pre", value))
    done = notice(
        f"Re-driven: the record was re-produced to {settings.logical(d.origin_topic)}"
        " and acknowledged."
    )
    return Safe(
        (done if redriven else "")
        + el("section", el("h2", "Dead letter"), _letter_fields(item, settings))
        + el("section", el("h2", "Error"), el("pre", d.error or "—"))
        + el(
            "section",
            el("h2", "Headers of the original record"),
            table(["header", "value"], [[k, _text(v)] for k, v in d.headers], empty="None."),
        )
        + el("section", el("h2", "Record"), record)
        + el(
            "div",
            el(
                "form",
                el("button", "Re-drive…", type="submit"),
                method="get",
                action=letter_href(item.id, tail="/redrive"),
            ),
            el("a", "All dead letters", href="/dead-letters"),
            class_="actions",
        )
    )


def confirm(item: Letter, settings: CliSettings, session: Session) -> Safe:
    d = item.letter
    origin = settings.logical(d.origin_topic)
    return Safe(
        el(
            "section",
            el("h2", "Re-drive this dead letter?"),
            el(
                "p",
                "This re-produces the original record (its key, value and headers) to ",
                el("strong", origin),
                f", where {d.consumer or 'its consumer'} handles it again. Do it once the cause"
                " is fixed: a record that fails again comes back here as a new dead letter.",
            ),
            _letter_fields(item, settings),
            el(
                "form",
                el("input", type="hidden", name=CSRF_FIELD, value=session.csrf),
                el(
                    "div",
                    el("button", f"Re-drive to {origin}", type="submit", class_="danger"),
                    el("a", "Cancel", href=letter_href(item.id)),
                    class_="actions",
                ),
                method="post",
                action=letter_href(item.id, tail="/redrive"),
            ),
        )
    )
