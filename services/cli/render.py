"""How each answer looks: rich tables and trees for people, JSON for scripts.

Renderers build rich objects from plain data and print nothing themselves; `__main__` decides
where they go. JSON goes through orjson, so times are ISO 8601 and ids are strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from services.cli.dlq import Letter
from services.cli.events import Seen
from services.cli.kafka import TopicOffsets
from services.cli.sagas import Saga
from services.cli.settings import CliSettings
from services.cli.status import Health
from services.cli.trace import Node

STATE_STYLE = {"up": "green", "not ready": "yellow", "down": "bold red"}


def json_text(data: Any) -> str:
    return orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode()


def json_line(data: Any) -> str:
    return orjson.dumps(data, default=str).decode()


def _time(at: datetime | None) -> str:
    """UTC, to the millisecond."""
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def status(parts: list[Health]) -> Table:
    table = Table(title="Leadline", title_justify="left")
    for column in ("part", "name", "where", "state", "detail"):
        table.add_column(column)
    for p in parts:
        table.add_row(p.kind, p.name, p.target, Text(p.state, STATE_STYLE[p.state]), p.detail)
    return table


def topics(found: list[TopicOffsets]) -> Table:
    table = Table()
    table.add_column("topic")
    table.add_column("partitions", justify="right")
    table.add_column("records", justify="right")
    table.add_column("end offsets")
    table.add_column("lag by group")
    for t in found:
        ends = " ".join(f"{p.partition}:{p.end}" for p in t.partitions)
        lag = "\n".join(f"{g.group} {g.total}" for g in t.groups)
        table.add_row(t.topic, str(len(t.partitions)), str(t.records), ends, lag or "—")
    return table


def topics_json(found: list[TopicOffsets]) -> dict[str, Any]:
    return {
        "topics": [
            {
                "topic": t.topic,
                "physical": t.physical,
                "partitions": [
                    {"partition": p.partition, "start": p.start, "end": p.end} for p in t.partitions
                ],
                "records": t.records,
                "groups": [
                    {
                        "group": g.group,
                        "lag": g.total,
                        "partitions": [
                            {"partition": p, "committed": g.committed.get(p), "lag": lag}
                            for p, lag in sorted(g.lag.items())
                        ],
                    }
                    for g in t.groups
                ],
            }
            for t in found
        ]
    }


def event(seen: Seen) -> Text:
    where = f"{seen.topic}:{seen.partition}:{seen.offset}"
    line = Text.assemble((_time(seen.timestamp), "dim"), " ", (where, "cyan"), " ")
    e = seen.envelope
    if e is None:
        return line.append(f"{seen.error} key={seen.key}", "red")
    line.append(f"{e.type} v{e.version}", "bold" if seen.known else "bold red")
    line.append(f" key={e.key} correlation={e.correlation_id} event={e.event_id}")
    if e.causation_id is not None:
        line.append(f" cause={e.causation_id}")
    return line.append(" " + json_line(e.payload), "dim")


def letters(found: list[Letter], settings: CliSettings) -> Table:
    table = Table()
    table.add_column("id", overflow="fold")
    for column in ("failed at", "reason", "consumer"):
        table.add_column(column, no_wrap=True)
    table.add_column("origin", overflow="fold")
    table.add_column("type", no_wrap=True)
    table.add_column("error", no_wrap=True, overflow="ellipsis", min_width=20)
    for item in found:
        d = item.letter
        origin = item.origin(settings)
        error = d.error.splitlines()[0] if d.error else ""
        table.add_row(
            item.id, _time(item.at), d.reason, d.consumer, origin, item.seen.type or "—", error
        )
    return table


def _fields(rows: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, "—" if value is None or value == "" else str(value))
    return grid


def letter(item: Letter, settings: CliSettings) -> RenderableType:
    d, seen = item.letter, item.seen
    grid = _fields(
        [
            ("id", item.id),
            ("failed at", _time(item.at)),
            ("reason", d.reason),
            ("consumer", d.consumer),
            ("origin", item.origin(settings)),
            ("key", seen.key),
            ("event id", d.event_id),
            ("type", seen.type),
            ("error", d.error),
        ]
    )
    if seen.envelope is not None:
        body: RenderableType = JSON(json_text(seen.envelope.model_dump(mode="json")))
    else:
        value = "null (a tombstone)" if seen.value is None else repr(seen.text[:2000])
        body = Group(Text(seen.error or "", "red"), Text(f"value {value}"))
    return Group(grid, Text("record", "bold"), body)


def saga(s: Saga) -> RenderableType:
    grid = _fields(
        [
            ("order", s.order_id),
            ("customer", s.customer_id),
            ("status", s.status),
            ("reason", s.reason),
            ("deadline", _time(s.deadline_at)),
            ("overdue", "yes" if s.overdue else None),
            ("payment", s.payment_id),
            ("receipt", s.receipt_number),
            ("awaiting", ", ".join(s.awaiting)),
        ]
    )
    steps = Table(title="steps", title_justify="left")
    for column in ("after", "message", "status", "sent", "note"):
        steps.add_column(column)
    first = s.history[0].at if s.history else None
    for step in s.history:
        after = f"+{(step.at - first).total_seconds():.3f}s" if first else ""
        sent = ", ".join(c.type for c in step.commands)
        steps.add_row(after, step.type, step.status, sent or "—", step.note)
    return Group(grid, steps)


def saga_json(s: Saga) -> dict[str, Any]:
    data = s.model_dump(mode="json", exclude={"history"})
    data["steps"] = [step.model_dump(mode="json") for step in s.history]
    return data


def sagas(counts: dict[str, int], found: list[Saga]) -> RenderableType:
    summary = "  ".join(f"{status} {n}" for status, n in counts.items()) or "no sagas"
    table = Table()
    for column in ("order", "status", "reason", "deadline", "updated"):
        table.add_column(column, overflow="fold")
    for s in found:
        table.add_row(
            s.order_id, s.status, s.reason or "—", _time(s.deadline_at), _time(s.updated_at)
        )
    return Group(Text(summary), table)


def sagas_json(counts: dict[str, int], found: list[Saga]) -> dict[str, Any]:
    return {
        "counts": counts,
        "sagas": [
            {
                "order_id": s.order_id,
                "status": s.status,
                "reason": s.reason,
                "deadline_at": s.deadline_at,
                "updated_at": s.updated_at,
            }
            for s in found
        ],
    }


def trace(order_id: str, roots: list[Node]) -> Tree:
    first = min(r.at for r in roots)
    tree = Tree(Text.assemble("order ", (order_id, "bold"), f"  (first message {_time(first)})"))

    def grow(branch: Tree, node: Node) -> None:
        envelope = node.seen.envelope
        assert envelope is not None
        label = Text.assemble(
            (f"+{(node.at - first).total_seconds():.3f}s ", "dim"),
            (envelope.type, "bold"),
            " ",
            (f"{node.seen.topic}:{node.seen.partition}:{node.seen.offset}", "cyan"),
            f" by {envelope.producer}",
        )
        if node.copies > 1:
            label.append(f" (found {node.copies} times)", "yellow")
        if envelope.causation_id is not None and node in roots:
            label.append(f" (cause {envelope.causation_id} not found)", "yellow")
        twig = branch.add(label)
        for failure in node.dead_letters:
            why = failure.error.splitlines()[0] if failure.error else ""
            twig.add(Text(f"dead-lettered by {failure.consumer}: {failure.reason}: {why}", "red"))
        for child in node.children:
            grow(twig, child)

    for root in roots:
        grow(tree, root)
    return tree


def trace_json(order_id: str, roots: list[Node]) -> dict[str, Any]:
    first = min(r.at for r in roots)
    return {"order_id": order_id, "first_at": first, "roots": [r.as_json(first) for r in roots]}
