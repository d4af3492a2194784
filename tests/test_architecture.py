"""The package layout is the architecture: layers import only downwards, and no modules import each other.

Every import counts, the lazy ones inside functions included (a lazy import hides a cycle,
it does not remove it). The stack, bottom up: jobs ← db ← workers ← orchestrator, where the
orchestrator takes from workers only the in-process runner that embedded mode runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("jobs", "db", "workers", "orchestrator")
# What each package may import of ours, besides itself.
ALLOWED = {
    "jobs": set(),
    "db": {"jobs"},
    "workers": {"db", "jobs"},
    "orchestrator": {"db", "jobs", "workers.runner"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports anywhere in its body (`from a import b` counts a.b when b is a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in modules}


def graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def allowed(importer: str, imported: str) -> bool:
    package = importer.split(".")[0]
    target = imported.split(".")[0]
    if target == package:
        return True
    return any(imported == rule or imported.startswith(rule + ".") for rule in ALLOWED[package])


def test_layers_import_only_downwards() -> None:
    wrong = sorted(
        f"{importer} imports {imported}"
        for importer, targets in graph().items()
        for imported in targets
        if not allowed(importer, imported)
    )
    assert wrong == []


def test_no_import_cycles() -> None:
    edges = graph()
    # A package's __init__ importing its own submodules is a re-export, not a cycle between peers.
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")} for m, ts in edges.items()}
    cycles = [component for component in strongly_connected(edges) if len(component) > 1]
    assert cycles == []


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative enough for a few hundred modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components
