"""Dependency direction (STYLE.md): schemas → pydantic; shared never → services; services.<x> never
→ services.<y>; simulators (upstream stand-ins) → shared and schemas only, and no service → them.
Imports are read with `ast`, so nothing is executed and TYPE_CHECKING imports count.
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
# our own top-level packages; third-party libraries are not this test's business
OUR_PACKAGES = {"schemas", "shared", "services", "simulators", "tests", "bench"}
SIMULATORS_MAY_IMPORT = {"shared", "schemas", "simulators"}


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
    if layer == "shared" and top in ("services", "simulators"):
        return f"{module} imports {imported}: shared never imports {top}"
    if layer == "simulators" and top in OUR_PACKAGES - SIMULATORS_MAY_IMPORT:
        return f"{module} imports {imported}: a simulator imports only shared and schemas"
    if layer == "services" and top == "simulators":
        return f"{module} imports {imported}: a service never imports a simulator"
    if layer == "services" and top == "services":
        mine, theirs = module.split("."), imported.split(".")
        if len(mine) > 1 and len(theirs) > 1 and mine[1] != theirs[1]:
            return f"{module} imports {imported}: a service never imports another service"
    return None


def problems_in(source: str, module: str, *, is_package: bool = False) -> list[str]:
    found = (violations(module, name) for name in imports(source, module, is_package=is_package))
    return sorted({p for p in found if p})


def test_the_code_follows_the_dependency_direction() -> None:
    layers = ("schemas", "shared", "services", "simulators")
    files = [p for layer in layers for p in (ROOT / layer).rglob("*.py")]
    assert any(p.parts[-2] == "shared" for p in files), "no code found: wrong ROOT?"
    assert any(p.parts[-2] == "payment_provider" for p in files), "no simulator found"
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
        ("simulators.payment_provider.handlers", "from services.orchestrator import saga"),
        ("simulators.payment_provider.handlers", "import tests.support"),
        ("services.orchestrator.saga", "from simulators.payment_provider import domain"),
        ("shared.runtime", "import simulators.payment_provider"),
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
        (
            "simulators.payment_provider.handlers",
            "from schemas.payments.v1 import RequestPayment\nfrom shared.envelope import Envelope"
            "\nfrom simulators.payment_provider import domain\nimport confluent_kafka",
        ),
    ],
)
def test_the_check_allows_a_right_import(module: str, source: str) -> None:
    assert problems_in(source, module) == []


@pytest.mark.parametrize("kind", ["integration", "e2e"])
def test_every_integration_and_e2e_test_file_carries_its_marker(kind: str) -> None:
    # `-m "not integration"` must leave out everything that needs real infrastructure
    folder = ROOT / "tests" / kind
    unmarked = [
        p.name
        for p in sorted(folder.glob("test_*.py"))
        if f"pytestmark = pytest.mark.{kind}" not in p.read_text()
    ]
    assert unmarked == []
