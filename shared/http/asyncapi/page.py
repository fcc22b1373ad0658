"""The AsyncAPI document as one HTML page. Every string from the document goes through `esc`
(or `prose`, which escapes first); the markup around it is ours."""

from __future__ import annotations

import html
import re
from typing import Any

from shared.http.asyncapi.document import Document, at, deref, final_ref, label, pointer
from shared.http.asyncapi.fields import Field, field_rows, message_fields, type_of

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 2rem;color:#222}
h1 small{font-weight:normal;color:#666} h2{border-bottom:1px solid #ccc;margin-top:2.5rem}
section.item{border-left:3px solid #8ab;padding:.1rem 0 .1rem 1rem;margin:1.5rem 0}
table{border-collapse:collapse;width:100%;margin:.5rem 0} th,td{text-align:left;
vertical-align:top;padding:.25rem .5rem;border-bottom:1px solid #eee} th{background:#f4f6f8}
code{font-size:.9em;background:#f4f6f8;padding:0 .2em} .c{color:#666;font-size:.9em}
.none{color:#666;font-style:italic}
"""
CODE_SPAN = re.compile(r"`([^`]+)`")


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def prose(text: object) -> str:
    """Escaped text; markdown's `code` spans, the only markup our descriptions use, as <code>."""
    return CODE_SPAN.sub(r"<code>\1</code>", esc(text))


def para(text: object) -> str:
    return f"<p>{prose(text)}</p>" if text else ""


def table(head: tuple[str, ...], rows: list[list[str]], empty: str) -> str:
    """Cells are HTML already; `head` and `empty` are our own words."""
    if not rows:
        return f'<p class="none">{empty}</p>'
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def fields_table(rows: list[Field]) -> str:
    def notes(f: Field) -> str:
        limits = (
            f' <span class="c">{esc(" · ".join(f.constraints))}</span>' if f.constraints else ""
        )
        return prose(f.description) + limits

    cells = [
        [
            f'<code style="margin-left:{1.5 * f.depth}em">{esc(f.path)}</code>'
            if f.depth
            else f"<code>{esc(f.path)}</code>",
            f"<code>{esc(f.type)}</code>",
            "yes" if f.required else "",
            notes(f),
        ]
        for f in rows
    ]
    return table(("field", "type", "required", "description"), cells, "no fields")


def render_html(document: Document) -> str:
    """The whole page: servers, channels (address, Kafka binding, messages), operations, each
    message with its Kafka key, headers and payload fields, and the schemas messages extend."""
    return _Page(document).html()


class _Page:
    def __init__(self, document: Document) -> None:
        self.doc = document
        self.channels: dict[str, Any] = document.get("channels", {})
        self.anchors = {pointer("channels", c): f"channel-{n}" for n, c in enumerate(self.channels)}
        # final reference → message, in order of first use; a message no channel names comes last
        self.messages: dict[str, Document] = {}
        self.used_on: dict[str, list[str]] = {}
        for name, channel in self.channels.items():
            for key in channel.get("messages", {}):
                ref = final_ref(document, pointer("channels", name, "messages", key))
                self.messages.setdefault(ref, at(document, ref))
                self.used_on.setdefault(ref, []).append(name)
        for key in document.get("components", {}).get("messages", {}):
            ref = pointer("components", "messages", key)
            self.messages.setdefault(ref, at(document, ref))
        self.anchors |= {ref: f"message-{n}" for n, ref in enumerate(self.messages)}
        self.bases: list[str] = []  # the schemas messages extend: message_list() fills it

    def link(self, ref: str) -> str:
        ref = final_ref(self.doc, ref)
        anchor = self.anchors.get(ref)
        return f'<a href="#{anchor}">{esc(label(ref))}</a>' if anchor else esc(label(ref))

    def html(self) -> str:
        info = self.doc.get("info", {})
        title = esc(info.get("title", ""))
        head = [
            '<!doctype html><html lang="en"><head><meta charset="utf-8">',
            f"<title>{title} — AsyncAPI</title><style>{STYLE}</style></head><body>",
            f"<h1>{title} <small>{esc(info.get('version', ''))}</small></h1>",
            f"<p>AsyncAPI {esc(self.doc.get('asyncapi', '?'))} · "
            '<a href="asyncapi.json">the document as JSON</a> · <a href="docs">HTTP API</a></p>',
            para(info.get("description")),
        ]
        body = [self.servers(), self.channel_list(), self.operations(), self.message_list()]
        # schemas() after message_list(): it lists the bases the messages named
        return "\n".join([*head, *body, self.schemas(), "</body></html>\n"])

    def servers(self) -> str:
        rows = [
            [
                esc(name),
                f"<code>{esc(s.get('host', ''))}{esc(s.get('pathname', ''))}</code>",
                esc(" ".join(filter(None, (s.get("protocol"), s.get("protocolVersion"))))),
                prose(s.get("description", "")),
            ]
            for name, s in self.doc.get("servers", {}).items()
        ]
        servers = table(("server", "host", "protocol", "description"), rows, "none declared")
        return f'<section id="servers"><h2>Servers</h2>{servers}</section>'

    def channel_list(self) -> str:
        out = ['<section id="channels"><h2>Channels</h2>']
        for name, channel in self.channels.items():
            kafka = channel.get("bindings", {}).get("kafka", {})
            facts = [f"{k} {esc(kafka[k])}" for k in ("partitions", "replicas") if k in kafka]
            for key, value in kafka.get("topicConfiguration", {}).items():
                shown = ", ".join(map(str, value)) if isinstance(value, list) else value
                facts.append(f"{esc(key)} {esc(shown)}")
            keys = channel.get("messages", {})
            links = [self.link(pointer("channels", name, "messages", k)) for k in keys]
            carried = ", ".join(links) or '<span class="none">none</span>'
            out += [
                f'<section class="item" id="{self.anchors[pointer("channels", name)]}">',
                f"<h3>{esc(name)}</h3><p>address <code>{esc(channel.get('address'))}</code>",
                f' · <span class="c">Kafka: {"; ".join(facts)}</span>' if facts else "",
                f"</p>{para(channel.get('description'))}",
                f"<p>messages: {carried}</p></section>",
            ]
        return "\n".join([*out, "</section>"])

    def operations(self) -> str:
        rows = [
            [
                esc(name),
                esc(op.get("action", "")),
                self.link(op["channel"]["$ref"]) if "$ref" in op.get("channel", {}) else "",
                ", ".join(self.link(m["$ref"]) for m in op.get("messages", []) if "$ref" in m)
                or "all the channel's",
                prose(op.get("summary") or op.get("description") or ""),
            ]
            for name, op in self.doc.get("operations", {}).items()
        ]
        ops = table(
            ("operation", "action", "channel", "messages", "summary"), rows, "none declared"
        )
        return f'<section id="operations"><h2>Operations</h2>{ops}</section>'

    def message_list(self) -> str:
        out = ['<section id="messages"><h2>Messages</h2>']
        for ref, message in self.messages.items():
            extends, payload = message_fields(self.doc, message.get("payload", {}))
            self.bases += [b for b in extends if b not in self.bases]
            channels = [self.link(pointer("channels", c)) for c in self.used_on.get(ref, [])]
            key = message.get("bindings", {}).get("kafka", {}).get("key")
            name = message.get("title") or message.get("name") or label(ref)
            out += [
                f'<section class="item" id="{self.anchors[ref]}"><h3>{esc(name)}</h3>',
                f"<p><code>{esc(label(ref))}</code> on {', '.join(channels) or 'no channel'}",
                f" · Kafka key: <code>{esc(type_of(self.doc, key))}</code>"
                f" {prose(key.get('description', ''))}"
                if isinstance(key, dict)
                else "",
                f"</p>{para(message.get('summary'))}{para(message.get('description'))}",
                "<h4>Headers</h4>",
                fields_table(list(field_rows(self.doc, message.get("headers", {})))),
                "<h4>Payload</h4>",
            ]
            if extends:
                bases = (
                    f'<a href="#schema-{self.bases.index(b)}">{esc(label(b))}</a>' for b in extends
                )
                out.append(f"<p>{', '.join(bases)}, with:</p>")
            out += [fields_table(payload), "</section>"]
        return "\n".join([*out, "</section>"])

    def schemas(self) -> str:
        out = ['<section id="schemas"><h2>Schemas</h2>']
        for n, ref in enumerate(self.bases):
            schema = deref(self.doc, {"$ref": ref})
            out += [
                f'<section class="item" id="schema-{n}"><h3>{esc(label(ref))}</h3>',
                para(schema.get("description")),
                fields_table(list(field_rows(self.doc, schema))),
                "</section>",
            ]
        return "\n".join([*out, "</section>"])
