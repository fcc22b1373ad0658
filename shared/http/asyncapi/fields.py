"""A message's schemas as rows of a field table: dotted path, type, required, description and
constraints. Covers what our pydantic models generate (objects, arrays, nullable `anyOf`,
`allOf` over the envelope, `$ref`s); anything else still gets a row, typed `any`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.http.asyncapi.document import Document, deref

MAX_DEPTH = 6  # nested rows; a recursive schema stops here
CONSTRAINTS = (
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minItems", "≥ {} items"),
    ("maxItems", "≤ {} items"),
    ("pattern", "pattern {}"),
    ("default", "default {}"),
)


@dataclass(frozen=True)
class Field:
    path: str  # payload.lines[].sku
    type: str
    required: bool
    description: str
    constraints: tuple[str, ...]
    depth: int


def properties(document: Document, schema: Any) -> tuple[dict[str, Document], set[str]]:
    """An object schema's fields, its `allOf` branches merged (a later branch narrows an earlier
    one, e.g. the envelope's `type` to a constant), and the names any branch requires."""
    node = deref(document, schema)
    if not isinstance(node, dict):
        return {}, set()
    fields: dict[str, Document] = {}
    required = set(node.get("required", ()))
    for branch in node.get("allOf", ()):
        more, needed = properties(document, branch)
        for name, prop in more.items():
            fields[name] = {**fields.get(name, {}), **prop}
        required |= needed
    for name, prop in node.get("properties", {}).items():
        fields[name] = {**fields.get(name, {}), **deref(document, prop)}
    return fields, required


def nullable_inner(document: Document, node: Document) -> Document:
    """The one non-null variant of an `anyOf`/`oneOf`, else the node itself."""
    variants = [deref(document, v) for v in node.get("anyOf") or node.get("oneOf") or ()]
    kept = [v for v in variants if isinstance(v, dict) and v.get("type") != "null"]
    return kept[0] if len(kept) == 1 else node


def type_of(document: Document, schema: Any, depth: int = 0) -> str:
    """`string (uuid)`, `"OrderPlaced"` (a constant), `array of object (OrderLine)`,
    `integer | null`…"""
    node = deref(document, schema)
    if not isinstance(node, dict) or depth > MAX_DEPTH:
        return "any"
    if "const" in node:
        return json.dumps(node["const"], ensure_ascii=False)
    if "enum" in node:
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in node["enum"])
    variants = node.get("anyOf") or node.get("oneOf")
    if variants:
        return " | ".join(type_of(document, v, depth + 1) for v in variants)
    kind = node.get("type")
    if kind == "array":
        return (
            f"array of {type_of(document, node['items'], depth + 1)}" if "items" in node else kind
        )
    if kind == "object" or (kind is None and ("properties" in node or "allOf" in node)):
        return f"object ({node['title']})" if "title" in node else "object"
    if isinstance(kind, list):
        return " | ".join(map(str, kind))
    if kind == "string" and "format" in node:
        return f"string ({node['format']})"
    return str(kind) if kind else "any"


def field_rows(
    document: Document, schema: Any, prefix: str = "", depth: int = 0, only: set[str] | None = None
) -> Iterator[Field]:
    """One row per field, the fields of nested objects and arrays of objects as `a.b` and
    `a[].b` rows after it; `only` keeps just those top-level names."""
    fields, required = properties(document, schema)
    for name, prop in fields.items():
        if only is not None and name not in only:
            continue
        inner = nullable_inner(document, prop)
        limits = tuple(
            text.format(source[key] if key == "pattern" else json.dumps(source[key]))
            for source in ((prop,) if inner is prop else (prop, inner))
            for key, text in CONSTRAINTS
            if key in source and "const" not in prop  # a constant says it all
        )
        description = prop.get("description") or inner.get("description") or ""
        path = prefix + name
        yield Field(path, type_of(document, prop), name in required, description, limits, depth)
        if depth >= MAX_DEPTH:
            continue
        if inner.get("type") == "array" and "items" in inner:
            yield from field_rows(document, inner["items"], f"{path}[].", depth + 1)
        else:
            yield from field_rows(document, inner, f"{path}.", depth + 1)


def message_fields(document: Document, payload: Any) -> tuple[list[str], list[Field]]:
    """(bases, rows) of a message payload. An `allOf` branch that is a reference is a base (the
    envelope): its fields are listed once on their own, and the rows here are the fields the
    message itself sets, with what the bases say of them (type, required)."""
    node = deref(document, payload)
    branches = node.get("allOf", ()) if isinstance(node, dict) else ()
    bases = [b["$ref"] for b in branches if isinstance(b, dict) and "$ref" in b]
    if not bases:
        return [], list(field_rows(document, node))
    own = set(node.get("properties", {}))
    for branch in branches:
        if not (isinstance(branch, dict) and "$ref" in branch):
            own |= set(properties(document, branch)[0])
    return bases, list(field_rows(document, node, only=own))
