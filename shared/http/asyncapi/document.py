"""One self-contained AsyncAPI document, and following the `$ref`s inside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Document = dict[str, Any]


def pointer(*tokens: str) -> str:
    """`#/a/b` for tokens a, b (JSON Pointer escaping: `~` → `~0`, `/` → `~1`)."""
    return "#" + "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def label(ref: str) -> str:
    """The last token of a reference: `#/components/messages/OrderPlaced.v2` → OrderPlaced.v2."""
    return ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")


def bundle(path: Path) -> Document:
    """The document at `path`, each file it refers to (and each file those refer to) copied into
    `components.schemas` under the file's name without `.json`, every `$ref` then pointing inside
    the one document. ValueError when two files would take the same name."""
    document: Document = json.loads(path.read_text(encoding="utf-8"))
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    names: dict[Path, str] = {}

    def embed(file: Path) -> str:
        file = file.resolve()
        if file not in names:
            name = file.name.removesuffix(".json")
            if name in schemas:
                raise ValueError(f"{file}: components.schemas already has {name!r}")
            names[file] = name
            schemas[name] = {}  # taken before the walk, so a file referring back finds it
            schema = json.loads(file.read_text(encoding="utf-8"))
            schemas[name] = rewrite(schema, file.parent, pointer("components", "schemas", name))
        return names[file]

    def rewrite(node: Any, folder: Path, root: str) -> Any:
        if isinstance(node, list):
            return [rewrite(v, folder, root) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: rewrite(v, folder, root) for k, v in node.items()}
        if isinstance(node.get("$ref"), str):
            target, _, fragment = node["$ref"].partition("#")
            here = pointer("components", "schemas", embed(folder / target)) if target else root
            out["$ref"] = here + fragment
        return out

    bundled: Document = rewrite(document, path.parent, "#")
    bundled["components"]["schemas"] = schemas
    return bundled


def at(document: Document, ref: str) -> Any:
    """What a `#/…` reference points at; ValueError when it points nowhere."""
    if not ref.startswith("#"):
        raise ValueError(f"{ref!r}: not a reference inside the document (bundle it first)")
    node: Any = document
    for token in ref[1:].split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ValueError(f"{ref!r} points nowhere") from None
    return node


def final_ref(document: Document, ref: str) -> str:
    """The last reference of a chain (`#/channels/c/messages/m` → `#/components/messages/m`)."""
    for _ in range(32):
        node = at(document, ref)
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
            return ref
        ref = node["$ref"]
    raise ValueError(f"{ref!r}: a cycle of references")


def deref(document: Document, node: Any) -> Any:
    """`node`, or what its `$ref` (chain) points at."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return at(document, final_ref(document, node["$ref"]))
    return node
