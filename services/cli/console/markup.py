"""HTML built in Python, escaped by default: every page is made of `el` calls, and `el` escapes
each child and attribute value unless it is `Safe` (markup `el` itself made). Nothing reaches a
page through string formatting alone, so a dead letter's key, an error text or an order id
cannot inject markup. The pages need no script at all; the stylesheet is the one other file.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime

VOID = frozenset({"input", "meta", "link", "br"})


class Safe(str):
    """Markup built here: already escaped, inserted as it is."""

    __slots__ = ()


def esc(value: object) -> Safe:
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def _flat(children: Iterable[object]) -> Iterable[object]:
    for child in children:
        if isinstance(child, list):
            yield from _flat(child)
        else:
            yield child


def join(children: Iterable[object]) -> Safe:
    """The children's markup in order; a list among them stands for its items."""
    return Safe("".join(esc(c) for c in _flat(children)))


def el(tag: str, *children: object, **attrs: object) -> Safe:
    """`<tag attrs>children</tag>`. `class_` names the class attribute and `_` in names becomes
    `-`; an attribute that is None or False is left out, True writes it bare."""
    written = "".join(
        f" {name.rstrip('_').replace('_', '-')}" + ("" if value is True else f'="{esc(value)}"')
        for name, value in attrs.items()
        if value is not None and value is not False
    )
    if tag in VOID:
        return Safe(f"<{tag}{written}>")
    return Safe(f"<{tag}{written}>{join(children)}</{tag}>")


def table(
    head: list[str],
    rows: list[list[object]],
    *,
    empty: str,
    numeric: frozenset[int] = frozenset(),
    **attrs: object,
) -> Safe:
    """A table, or the `empty` sentence when there are no rows; `numeric` columns (by index)
    align right."""
    if not rows:
        return el("p", empty, class_="empty")

    def cls(i: int) -> str | None:
        return "num" if i in numeric else None

    return el(
        "table",
        el(
            "thead", el("tr", [el("th", h, scope="col", class_=cls(i)) for i, h in enumerate(head)])
        ),
        el(
            "tbody",
            [el("tr", [el("td", c, class_=cls(i)) for i, c in enumerate(row)]) for row in rows],
        ),
        **attrs,
    )


def fields(rows: list[tuple[str, object]]) -> Safe:
    return el(
        "dl",
        [[el("dt", name), el("dd", "—" if value in (None, "") else value)] for name, value in rows],
        class_="fields",
    )


def when(at: datetime | None) -> str:
    """UTC, to the millisecond, as the CLI prints it."""
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "—"
    seconds = (now - at).total_seconds()
    span = abs(seconds)
    text = (
        f"{span:.0f} s"
        if span < 120
        else f"{span / 60:.0f} min"
        if span < 7200
        else f"{span / 3600:.1f} h"
    )
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def document(title: str, nav: Safe, body: Safe, footer: str) -> str:
    return "<!doctype html>\n" + el(
        "html",
        el(
            "head",
            el("meta", charset="utf-8"),
            el("meta", name="viewport", content="width=device-width, initial-scale=1"),
            el("title", f"{title} · Leadline console"),
            el("link", rel="stylesheet", href="/console.css"),
        ),
        el(
            "body",
            el("header", el("a", "Leadline console", href="/", class_="brand"), nav),
            el("main", el("h1", title), body),
            el("footer", footer),
        ),
        lang="en",
    )


STYLESHEET = """
:root { --ink: #1d2330; --dim: #5d6677; --line: #d8dde6; --bg: #f6f7f9; --accent: #2f5fb3;
  --bad: #a4262c; --bad-bg: #fdecec; --ok-bg: #e8f5ec; --warn: #8a5a00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.5rem;
  background: var(--ink); color: #fff; }
header a { color: #fff; text-decoration: none; }
header .brand { font-weight: 700; }
header nav { display: flex; gap: 1rem; flex: 1; align-items: center; }
header .who { margin-left: auto; color: #c9cfdb; display: flex; gap: .6rem; align-items: center; }
header form { margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 1rem 1.5rem 2rem; }
h1 { font-size: 1.4rem; margin: .6rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
  padding: .2rem 1rem 1rem; margin-bottom: 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--dim); font-weight: 600; font-size: .85rem; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.nowrap { white-space: nowrap; }
.wrap { overflow-wrap: anywhere; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85rem; }
pre { background: var(--bg); border: 1px solid var(--line); padding: .6rem; overflow-x: auto;
  white-space: pre-wrap; word-break: break-word; }
a { color: var(--accent); }
.problem { background: var(--bad-bg); color: var(--bad); border: 1px solid #f3c2c2;
  border-radius: 6px; padding: .6rem .8rem; margin: .6rem 0; }
.notice { background: var(--ok-bg); border: 1px solid #b8dec3; border-radius: 6px;
  padding: .6rem .8rem; margin: .6rem 0; }
.bad { color: var(--bad); overflow-wrap: anywhere; }
.empty { color: var(--dim); font-style: italic; }
.counts { display: flex; flex-wrap: wrap; gap: .6rem; padding: 0; list-style: none; }
.counts li a { display: block; min-width: 7.5rem; padding: .5rem .8rem; border-radius: 6px;
  border: 1px solid var(--line); text-decoration: none; color: var(--ink); background: #fff; }
.counts li a.current { border-color: var(--accent); box-shadow: 0 0 0 1px var(--accent); }
.counts .n { display: block; font-size: 1.5rem; font-weight: 700; }
.counts .state { color: var(--dim); font-size: .85rem; }
.status { display: inline-block; padding: 0 .45rem; border-radius: 4px; background: var(--bg);
  border: 1px solid var(--line); font-size: .85rem; }
.status.failed, .status.rejected, .status.cancelled { color: var(--bad); }
.status.completed { color: #1e6b35; }
.lagging { color: var(--warn); font-weight: 700; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dl.fields dt { color: var(--dim); }
dl.fields dd { margin: 0; word-break: break-word; }
form.filters { display: flex; flex-wrap: wrap; gap: .8rem; align-items: end; padding-top: 1rem; }
label { display: flex; flex-direction: column; font-size: .85rem; color: var(--dim); gap: .2rem; }
input, select, button { font: inherit; padding: .3rem .5rem; }
button { cursor: pointer; border: 1px solid var(--accent); background: var(--accent); color: #fff;
  border-radius: 4px; }
button.quiet { background: transparent; color: inherit; border-color: #7a8396; }
button.danger { background: var(--bad); border-color: var(--bad); }
.actions { display: flex; gap: 1rem; align-items: center; margin-top: 1rem; }
.login { max-width: 28rem; margin: 3rem auto; }
.login input { width: 100%; }
footer { max-width: 1200px; margin: 0 auto; padding: 0 1.5rem 2rem; color: var(--dim);
  font-size: .8rem; }
"""
