"""Dependency direction (STYLE.md): schemas → pydantic; shared never → services; services.<x> never
→ services.<y>. Imports are read with `ast`, so nothing is executed and TYPE_CHECKING imports count.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_MAY_IMPORT = {
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_extensions",
    "schemas",
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, *, is_package: bool = False) -> Iterator[str]:
    """Every absolute module name `module` imports, relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            # `from services import inventory` imports a sibling package as much as a dotted path
            yield from (f"{target}.{alias.name}" for alias in node.names)


def violations(module: str, imported: str) -> str | None:
    top = imported.split(".")[0]
    layer = module.split(".")[0]
    if layer == "schemas" and top not in SCHEMAS_MAY_IMPORT and top not in sys.stdlib_module_names:
        return f"{module} imports {imported}: schemas may import only pydantic and the stdlib"
    if layer == "shared" and top == "services":
        return f"{module} imports {imported}: shared never imports services"
    if layer == "services" and top == "services":
        mine, theirs = module.split("."), imported.split(".")
        if len(mine) > 1 and len(theirs) > 1 and mine[1] != theirs[1]:
            return f"{module} imports {imported}: a service never imports another service"
    return None


def problems_in(source: str, module: str, *, is_package: bool = False) -> list[str]:
    found = (violations(module, name) for name in imports(source, module, is_package=is_package))
    return sorted({p for p in found if p})


def test_the_code_follows_the_dependency_direction() -> None:
    files = [p for layer in ("schemas", "shared", "services") for p in (ROOT / layer).rglob("*.py")]
    assert any(p.parts[-2] == "shared" for p in files), "no code found: wrong ROOT?"
    problems = [
        problem
        for path in files
        for problem in problems_in(
            path.read_text(), module_name(path), is_package=path.name == "__init__.py"
        )
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("schemas.checkout.v1", "import asyncpg"),
        ("schemas.checkout.v1", "from shared.envelope import Envelope"),
        ("shared.relay", "from services.checkout import api"),
        ("shared.relay", "import services.checkout.api"),
        ("services.checkout.handlers", "from services.inventory.domain import Stock"),
        ("services.checkout.handlers", "from services import inventory"),
        ("services.checkout.handlers", "from ..inventory import domain"),
    ],
)
def test_the_check_catches_a_wrong_import(module: str, source: str) -> None:
    assert problems_in(source, module) != []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("schemas.checkout.v1", "from pydantic import Field\nimport datetime, uuid"),
        ("schemas.checkout.v1", "from ..registry import Message"),
        ("shared.relay", "import asyncpg\nfrom schemas.catalogue import TOPICS"),
        (
            "services.checkout.handlers",
            "from .domain import Order\nfrom shared.ports import Outbox",
        ),
        ("services.checkout.bootstrap", "from services.checkout import api"),
    ],
)
def test_the_check_allows_a_right_import(module: str, source: str) -> None:
    assert problems_in(source, module) == []
