"""The package's layering, checked on the source: imports point down, no cycles, no API reaches into the
other's modules, and the sandbox and the provider code never import each other.

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``. docs/architecture.md
describes the same rules for readers; this test is what keeps that page true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "airflow_provider_orders"

#: What each part may import from the package (besides itself). Parts not listed import nothing.
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "exceptions": {"models"},
    "status": {"models"},
    "_arguments": {"exceptions"},
    "_task_state": set(),
    "version_compat": set(),
    "hooks": {"root", "exceptions", "models", "version_compat"},
    "links": {"exceptions", "hooks"},
    "triggers": {"exceptions", "models", "hooks", "version_compat"},
    "sensors": {"exceptions", "models", "hooks", "triggers", "links", "_arguments", "version_compat"},
    "operators": {
        "exceptions",
        "models",
        "hooks",
        "triggers",
        "links",
        "_arguments",
        "_task_state",
        "version_compat",
    },
    "assets": {"models", "triggers"},
    "webhooks": {"models", "assets", "version_compat"},
    "sandbox": set(),
    "cli": {"root", "exceptions", "models", "hooks"},
    "root": set(),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str:
    """The package module an imported name lives in (``pkg.mod.Class`` → ``pkg.mod``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(_resolve(n) for n in names if n.split(".")[0] == PACKAGE)
    found.discard(module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def _api(module: str) -> str | None:
    for api in ("datakitchen", "ezcater"):
        if api in module.split(".")[-1] or f".{api}." in f"{module}.":
            return api
    return None


def test_every_part_of_the_package_is_placed_in_a_layer() -> None:
    assert {_part(m) for m in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    part = _part(module)
    wrong = sorted(
        target for target in GRAPH[module] if _part(target) != part and _part(target) not in ALLOWED[part]
    )
    assert not wrong, f"{module} ({part}) may not import {wrong}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_an_api_never_reaches_into_the_other(module: str) -> None:
    api = _api(module)
    other = sorted(t for t in GRAPH[module] if api and _api(t) not in (None, api))
    assert not other, f"{module} ({api}) imports {other} of the other API"


def test_no_import_cycle() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_sandbox_and_the_provider_are_independent_readings_of_the_apis() -> None:
    """The sandbox never imports provider code (nor the provider the sandbox): the tests are where the
    two readings of the API documentation meet."""
    crossing = sorted(
        (module, target)
        for module, targets in GRAPH.items()
        for target in targets
        if (_part(module) == "sandbox") != (_part(target) == "sandbox") and _part(target) != "root"
    )
    assert not crossing, crossing
