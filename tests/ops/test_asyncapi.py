"""The AsyncAPI document: valid for the AsyncAPI initiative's own parser, which shares no code
with the Python that writes it, and served as a readable page at `/asyncapi` next to `/docs`.

The parser is @asyncapi/parser from npm, pinned by deploy/asyncapi/package-lock.json and
installed by `bash deploy/local/tools.sh asyncapi`. Without Node.js or the package these tests
fail, never skip: a skipped contract check reads like a passing one. That the committed document
is what the models generate is tests/unit/test_schemas.py's drift test.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from schemas.generate import SCHEMAS_DIR
from services.checkout.bootstrap import create_app as checkout_app
from services.checkout.settings import CheckoutSettings
from services.projection.bootstrap import create_app as projection_app
from services.projection.settings import ProjectionSettings
from shared.auth import AuthSettings
from shared.http.asyncapi import DOCUMENT, asyncapi_router, bundle, render_html

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "deploy" / "asyncapi"
INSTALL = "bash deploy/local/tools.sh asyncapi"
AUTH = AuthSettings(jwt_secret="asyncapi-test-secret-long-enough-for-hs256")
HOSTILE = "<script>alert('x')</script> & \"quoted\" </td></table><img src=x onerror=alert(1)>"
# every tag and attribute the page may contain: nothing from the document can add one
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "small", "p"}
TAGS |= {"a", "section", "table", "tr", "th", "td", "code", "span"}
ATTRIBUTES = {"lang", "charset", "href", "id", "class", "style"}


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def words(parts: list[str]) -> str:
    """Text pieces as a browser shows them: one space between words, whatever the markup."""
    return " ".join(" ".join(parts).split())


def ref(*tokens: str) -> str:
    return "#" + "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


# --- the independent parser -----------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    returncode: int
    output: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("error ")]


def validate(document: Path) -> Verdict:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"Node.js is not on PATH: install Node.js 20 or later, then {INSTALL}")
    installed = VALIDATOR / "node_modules" / "@asyncapi" / "parser" / "package.json"
    if not installed.is_file():
        pytest.fail(f"@asyncapi/parser is not installed: {INSTALL}")
    pinned = load(VALIDATOR / "package.json")["dependencies"]["@asyncapi/parser"]
    assert load(installed)["version"] == pinned, f"not the pinned parser: {INSTALL}"
    done = subprocess.run(
        [node, "validate.mjs", str(document)],
        cwd=VALIDATOR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Verdict(done.returncode, done.stdout + done.stderr)


def test_the_committed_document_has_no_errors_for_the_asyncapi_parser() -> None:
    verdict = validate(DOCUMENT)
    assert (verdict.returncode, verdict.errors) == (0, []), verdict.output
    assert "0 error(s)" in verdict.output


def test_the_served_document_is_valid_on_its_own(tmp_path: Path) -> None:
    # no json/ folder beside it: every schema must be inside the one document
    served = tmp_path / "asyncapi.json"
    served.write_text(json.dumps(bundle(DOCUMENT)), encoding="utf-8")
    verdict = validate(served)
    assert (verdict.returncode, verdict.errors) == (0, []), verdict.output
    assert "./json/" not in served.read_text(encoding="utf-8")


def missing_message(d: dict[str, Any], _: Path) -> None:
    d["channels"]["checkout.events"]["messages"]["OrderPlaced.v2"] = {
        "$ref": "#/components/messages/Ghost.v1"
    }


def missing_schema_file(_: dict[str, Any], folder: Path) -> None:
    (folder / "json" / "OrderPlaced.v2.json").unlink()


def partitions_as_text(d: dict[str, Any], _: Path) -> None:
    d["channels"]["checkout.events"]["bindings"]["kafka"]["partitions"] = "six"


@pytest.mark.parametrize(
    ("breaking", "expected"),
    [
        (missing_message, "error invalid-ref at channels/checkout.events/messages/OrderPlaced.v2"),
        (
            missing_schema_file,
            "error invalid-ref at components/messages/OrderPlaced.v2/payload/allOf/1/properties",
        ),
        (partitions_as_text, "at channels/checkout.events/bindings/kafka/partitions: "),
    ],
)
def test_a_broken_document_is_an_error_naming_where(
    tmp_path: Path, breaking: Callable[[dict[str, Any], Path], None], expected: str
) -> None:
    shutil.copytree(SCHEMAS_DIR / "json", tmp_path / "json")
    document = load(DOCUMENT)
    breaking(document, tmp_path)
    (tmp_path / "asyncapi.json").write_text(json.dumps(document), encoding="utf-8")
    verdict = validate(tmp_path / "asyncapi.json")
    assert verdict.returncode == 1, verdict.output
    assert any(expected in line for line in verdict.errors), verdict.output


# --- the page --------------------------------------------------------------------------------


class Page(HTMLParser):
    """The page's tags, attributes, link targets and ids, each `section.item`'s heading and
    text, and any tag closed out of order (the page must be well-formed to be trusted)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.items: list[tuple[str, str, list[str]]] = []  # id, h3 text, text
        self.text: list[str] = []
        self.misnested: list[str] = []
        self.open: list[str] = []
        self.item_level: int | None = None  # len(open) outside the item being read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes |= {name for name, _ in attrs}
        values = dict(attrs)
        self.ids |= {values["id"] or ""} if "id" in values else set()
        self.hrefs += [values["href"] or ""] if "href" in values else []
        if tag == "section" and values.get("class") == "item":
            self.items.append((values.get("id") or "", "", []))
            self.item_level = len(self.open)
        if tag != "meta":
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.misnested.append(tag)
        if len(self.open) == self.item_level:
            self.item_level = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.item_level is not None:
            anchor, heading, text = self.items[-1]
            text.append(data)
            if self.open[-1] == "h3":
                self.items[-1] = (anchor, heading + data, text)

    def item(self, heading: str) -> str:
        [found] = [words(text) for _, h, text in self.items if h == heading]
        return found

    def heading_of(self, anchor: str) -> str:
        [found] = [h for a, h, _ in self.items if a == anchor]
        return found


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert page.misnested == [], page.misnested
    assert page.open == [], page.open
    return page


def test_every_channel_message_and_payload_field_is_on_the_page() -> None:
    document = bundle(DOCUMENT)
    page = parse(render_html(document))
    for name, channel in document["channels"].items():
        shown = page.item(name)
        assert f"address {channel['address']}" in shown
        for key in channel.get("messages", {}):
            assert key in shown, (name, key)
    for key, message in document["components"]["messages"].items():
        shown = page.item(message["title"])
        assert key in shown
        schema = load(SCHEMAS_DIR / "json" / f"{key}.json")
        for prop in schema["properties"]:
            assert f"payload.{prop}" in shown, (key, prop)
        on = [c for c, ch in document["channels"].items() if key in ch.get("messages", {})]
        assert on, key
        assert all(c in shown for c in on)
    assert "payload.lines[].sku" in page.item("OrderPlaced v2")
    envelope = page.item("Envelope")
    assert all(f in envelope for f in load(SCHEMAS_DIR / "json" / "Envelope.json")["properties"])
    assert "127.0.0.1:9092" in words(page.text)


def test_every_link_on_the_page_leads_somewhere() -> None:
    page = parse(render_html(bundle(DOCUMENT)))
    inside = [h.removeprefix("#") for h in page.hrefs if h.startswith("#")]
    assert inside, "no links between sections"
    assert set(inside) <= page.ids
    assert {h for h in page.hrefs if not h.startswith("#")} == {"asyncapi.json", "docs"}


def test_operations_show_action_channel_and_messages() -> None:
    document = bundle(DOCUMENT)
    document["operations"] = {
        "placeOrder": {
            "action": "send",
            "channel": {"$ref": ref("channels", "checkout.events")},
            "messages": [
                {"$ref": ref("channels", "checkout.events", "messages", "OrderPlaced.v2")}
            ],
            "summary": "checkout writes `OrderPlaced`",
        },
        "confirmOrder": {
            "action": "receive",
            "channel": {"$ref": ref("channels", "checkout.commands")},
        },
    }
    html = render_html(document)
    page = parse(html)
    shown = words(page.text)
    assert "placeOrder send checkout.events OrderPlaced.v2 checkout writes OrderPlaced" in shown
    assert "confirmOrder receive checkout.commands all the channel's" in shown
    assert "<code>OrderPlaced</code>" in html
    targets = [h.removeprefix("#") for h in page.hrefs if h.startswith("#")]
    assert "checkout.events" in {page.heading_of(t) for t in targets if t.startswith("channel-")}


def hostile_document() -> dict[str, Any]:
    message = {
        "name": HOSTILE,
        "title": HOSTILE,
        "summary": f"`{HOSTILE}`",
        "headers": {"type": "object", "properties": {HOSTILE: {"const": HOSTILE}}},
        "payload": {
            "type": "object",
            "required": [HOSTILE],
            "properties": {
                HOSTILE: {"type": "string", "description": HOSTILE, "pattern": HOSTILE},
                "nested": {"type": "object", "properties": {HOSTILE: {"enum": [HOSTILE]}}},
            },
        },
        "bindings": {"kafka": {"key": {"type": "string", "description": HOSTILE}}},
    }
    return {
        "asyncapi": HOSTILE,
        "info": {"title": HOSTILE, "version": HOSTILE, "description": HOSTILE},
        "servers": {HOSTILE: {"host": HOSTILE, "protocol": HOSTILE, "description": HOSTILE}},
        "channels": {
            HOSTILE: {
                "address": HOSTILE,
                "description": HOSTILE,
                "messages": {HOSTILE: {"$ref": ref("components", "messages", HOSTILE)}},
                "bindings": {
                    "kafka": {"partitions": HOSTILE, "topicConfiguration": {HOSTILE: [HOSTILE]}}
                },
            }
        },
        "operations": {
            HOSTILE: {
                "action": HOSTILE,
                "channel": {"$ref": ref("channels", HOSTILE)},
                "messages": [{"$ref": ref("channels", HOSTILE, "messages", HOSTILE)}],
                "summary": HOSTILE,
            }
        },
        "components": {"messages": {HOSTILE: message}},
    }


def test_strings_from_the_document_are_shown_escaped_never_as_markup() -> None:
    html = render_html(hostile_document())
    page = parse(html)
    assert page.tags <= TAGS, page.tags - TAGS
    assert page.attributes <= ATTRIBUTES, page.attributes - ATTRIBUTES
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    text = words(page.text)
    # shown, not dropped: title, server, channel, address, message, field, constant, key…
    assert text.count(HOSTILE) >= 15, text.count(HOSTILE)
    assert json.dumps(HOSTILE) in text  # the constant, written as JSON
    assert f"nested.{HOSTILE}" in text


# --- served next to /docs --------------------------------------------------------------------


APPS: dict[str, Callable[[], FastAPI]] = {
    "checkout": lambda: checkout_app(CheckoutSettings(), AUTH),
    "projection": lambda: projection_app(ProjectionSettings(), AUTH),
}


@pytest.mark.parametrize("service", APPS)
async def test_the_service_serves_the_page_and_the_document_next_to_docs(service: str) -> None:
    # the app as its process builds it; its lifespan (PostgreSQL, Kafka) is not started, and
    # these routes need neither
    app = APPS[service]()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        page = await client.get("/asyncapi")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src" not in page.headers["content-security-policy"]
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert "OrderPlaced v2" in words(parse(page.text).text)
        document = await client.get("/asyncapi.json")
        assert document.status_code == 200
        assert document.headers["content-type"] == "application/json"
        assert document.json() == bundle(DOCUMENT)
        for link in ("asyncapi.json", "docs"):  # the page's own links, resolved as a browser does
            assert (await client.get(page.url.join(link))).status_code == 200, link
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not {"/asyncapi", "/asyncapi.json"} & set(paths)  # like /docs: not an API route


async def test_a_broken_document_fails_the_request_not_the_start(tmp_path: Path) -> None:
    app = FastAPI()
    app.include_router(asyncapi_router(tmp_path / "missing.json"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/asyncapi")).status_code == 500
        assert (await client.get("/asyncapi.json")).status_code == 500


def test_the_page_does_not_change_the_document() -> None:
    document = bundle(DOCUMENT)
    before = copy.deepcopy(document)
    render_html(document)
    assert document == before
