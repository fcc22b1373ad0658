"""Write the committed contract files from the models: `python -m schemas.generate [--check]`.

- `schemas/json/<Type>.v<N>.json`: the JSON Schema of every registered (type, version);
- `schemas/asyncapi.json`: an AsyncAPI 3.0 document built from the topic catalogue.

`--check` writes nothing and exits 1 when the committed files differ from what the models
generate, so CI fails when a model is edited without regenerating (an edited and regenerated
published version shows in review as a changed committed schema, and the committed examples in
`schemas/examples/` must still decode). A schema file whose (type, version) has no model fails
both modes: published versions are never deleted. The envelope's schema is written by
`shared.schema_export`, since schemas/ never imports shared.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import schemas  # noqa: F401  (registers every model)
from schemas.catalogue import TOPICS, Topic
from schemas.registry import REGISTRY, Message, Registry

SCHEMAS_DIR = Path(__file__).resolve().parent
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_FILE = "Envelope.json"
MESSAGE_FILE = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)\.json$")
KAFKA_BINDING_VERSION = "0.5.0"
Document = dict[str, Any]


def message_file(type_: str, version: int) -> str:
    return f"{type_}.v{version}.json"


def render(document: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline (diffs stay minimal)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def message_schema(model: type[Message]) -> Document:
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        **schema,
        "x-message-type": model.TYPE,
        "x-message-version": model.VERSION,
    }


def _headers(model: type[Message]) -> Document:
    # Kafka header values are bytes; they carry these UTF-8 strings (see shared.envelope).
    return {
        "type": "object",
        "required": ["event_id", "type", "version", "correlation_id"],
        "properties": {
            "event_id": {"type": "string", "format": "uuid"},
            "type": {"type": "string", "const": model.TYPE},
            "version": {"type": "string", "const": str(model.VERSION)},
            "correlation_id": {"type": "string", "description": "the order id"},
            # optional: consumers continue the trace they name, and start one without them
            "traceparent": {
                "type": "string",
                "description": "W3C trace context of the span that sent the record (optional)",
            },
            "tracestate": {"type": "string", "description": "W3C vendor trace state (optional)"},
        },
    }


def _message(model: type[Message], topic: Topic, latest: int) -> Document:
    key = topic.key_of(model.TYPE)
    status = (
        f"Superseded by v{latest}: still found on the topic; consumers upcast it."
        if latest > model.VERSION
        else "Producers write this version."
    )
    message: Document = {
        "name": model.TYPE,
        "title": f"{model.TYPE} v{model.VERSION}",
        "description": f"Record value: the envelope, payload of version {model.VERSION}. {status}",
        "contentType": "application/json",
        "correlationId": {"location": "$message.header#/correlation_id"},
        "headers": _headers(model),
        "payload": {
            "allOf": [
                {"$ref": f"./json/{ENVELOPE_FILE}"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": model.TYPE},
                        "version": {"const": model.VERSION},
                        "key": {"description": f"the payload's {key}"},
                        "payload": {"$ref": f"./json/{message_file(model.TYPE, model.VERSION)}"},
                    },
                },
            ]
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": key},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    if model.__doc__:  # a model without its own docstring has None here, not its base's
        message["summary"] = " ".join(model.__doc__.split())
    return message


def asyncapi(registry: Registry = REGISTRY, topics: Sequence[Topic] = TOPICS) -> Document:
    channels: Document = {}
    messages: Document = {}
    for topic in topics:
        refs: Document = {}
        for type_ in topic.message_types:
            latest = registry.latest_version(type_)
            for version in range(1, latest + 1):
                message_id = f"{type_}.v{version}"
                messages[message_id] = _message(registry.model(type_, version), topic, latest)
                refs[message_id] = {"$ref": f"#/components/messages/{message_id}"}
        channels[topic.name] = {
            "address": topic.name,
            "description": topic.description,
            "messages": refs,
            "bindings": {
                "kafka": {
                    "topic": topic.name,
                    "partitions": topic.partitions,
                    "topicConfiguration": {"cleanup.policy": [topic.cleanup_policy]},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        channels[topic.dead_letter] = {
            "address": topic.dead_letter,
            "description": (
                f"Dead letters of {topic.name}: records that could not be handled, value as "
                "received, the reason and origin in headers."
            ),
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Leadline",
            "version": "1.0.0",
            "description": (
                "Order-fulfilment events and commands on Kafka. Every record value is one JSON "
                "envelope; records are keyed by aggregate id, and every saga topic has the same "
                "partition count so one order's records share a partition number."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the single-node KRaft broker of `make up`",
            }
        },
        "channels": channels,
        "components": {"messages": messages},
    }


def expected_files(root: Path = SCHEMAS_DIR, registry: Registry = REGISTRY) -> dict[Path, str]:
    """Every file this generator owns, path → content."""
    files = {
        root / "json" / message_file(m.TYPE, m.VERSION): render(message_schema(m)) for m in registry
    }
    files[root / "asyncapi.json"] = render(asyncapi(registry))
    return files


def stale_files(root: Path = SCHEMAS_DIR, registry: Registry = REGISTRY) -> list[Path]:
    """Committed message schemas with no registered model: a published version was deleted."""
    known = {message_file(m.TYPE, m.VERSION) for m in registry}
    return sorted(
        p
        for p in (root / "json").glob("*.json")
        if MESSAGE_FILE.match(p.name) and p.name not in known
    )


def drift(expected: Mapping[Path, str]) -> dict[Path, str]:
    """Every expected file that is missing or differs on disk → a readable unified diff."""
    report = {}
    for path, text in sorted(expected.items()):
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        if path.exists() and committed == text:
            continue
        diff = difflib.unified_diff(
            committed.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"{path} (committed)" if path.exists() else "/dev/null (missing)",
            f"{path} (generated)",
        )
        report[path] = "".join(diff)
    return report


def sync(expected: Mapping[Path, str], *, check: bool, stale: Sequence[Path] = ()) -> int:
    """Write the files that drifted (with `check`: only report them); the exit status.

    `stale` files are reported and fail both modes."""
    found = drift(expected)
    for path, diff in found.items():
        if check:
            print(diff, file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(expected[path], encoding="utf-8")
            print(f"wrote {path}")
    for path in stale:
        print(f"no model for committed schema {path}: versions are never deleted", file=sys.stderr)
    if check and found:
        print(f"{len(found)} file(s) drifted: run `make schemas`", file=sys.stderr)
    return 1 if stale or (check and found) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    parser.add_argument("--root", type=Path, default=SCHEMAS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return sync(expected_files(args.root), check=args.check, stale=stale_files(args.root))


if __name__ == "__main__":
    sys.exit(main())
