"""The saga pages: the newest sagas of a status, and one saga's timeline (every message it
applied, the status after it, and the commands it sent)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.cli.console.markup import Safe, ago, el, fields, table, when
from services.cli.console.pages import counts_strip, saga_href, status
from services.cli.sagas import Saga


def saga_list(counts: dict[str, int], found: list[Saga], state: str | None) -> Safe:
    rows: list[list[object]] = [
        [
            el("a", s.order_id, href=saga_href(s.order_id)),
            status(s.status),
            s.reason or "—",
            when(s.deadline_at),
            when(s.updated_at),
            len(s.history),
        ]
        for s in found
    ]
    shown = f"in state {state}" if state else "in any state"
    return Safe(
        counts_strip(counts, state)
        + el(
            "section",
            el("h2", f"Newest sagas {shown}"),
            table(
                ["order", "status", "reason", "deadline", "updated", "steps"],
                rows,
                empty="No saga in this state.",
                numeric=frozenset({5}),
                id="saga-table",
            ),
        )
    )


def saga(s: Saga) -> Safe:
    now = datetime.now(UTC)
    deadline = f"{when(s.deadline_at)} ({ago(s.deadline_at, now)})" if s.deadline_at else None
    summary = fields(
        [
            ("order", s.order_id),
            ("customer", s.customer_id),
            ("status", status(s.status)),
            ("reason", s.reason),
            ("deadline", deadline),
            ("overdue", "yes: the receipt did not come in time" if s.overdue else None),
            ("payment", s.payment_id),
            ("receipt", s.receipt_number),
            ("awaiting", ", ".join(s.awaiting)),
        ]
    )
    first = s.history[0].at if s.history else None
    steps: list[list[object]] = [
        [
            el("span", when(step.at), class_="nowrap"),
            f"+{(step.at - first).total_seconds():.3f} s" if first else "",
            el("strong", step.type),
            el("span", step.message_id, class_="mono"),
            status(step.status),
            el(
                "ul",
                [el("li", f"{c.step}: {c.type} → {c.topic}") for c in step.commands],
            )
            if step.commands
            else "—",
            step.note,
        ]
        for step in s.history
    ]
    return Safe(
        el("section", el("h2", "Saga"), summary)
        + el(
            "section",
            el("h2", "Timeline"),
            el("p", "Every message the saga applied, and the commands it sent.", class_="empty"),
            table(
                ["at", "after", "message", "message id", "status after", "sent", "note"],
                steps,
                empty="No step recorded.",
                numeric=frozenset({1}),
                id="timeline",
            ),
        )
    )
