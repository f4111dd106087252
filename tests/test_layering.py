"""The layering of the packages, read from their imports (no import is run):

    schemas  <-  bus  <-  workers | edge  <-  cli

A package imports only those below it; ``workers`` and ``edge`` never import each other;
no modules import each other in a circle (imports inside functions and under
``TYPE_CHECKING`` count too: a circle hidden from the interpreter is still one).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

LAYERS = {"schemas": 0, "bus": 1, "workers": 2, "edge": 2, "cli": 3}
APART = {frozenset({"workers", "edge"})}


def _module_name(path: Path) -> str:
    parts = ["praxis", *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The product's modules ``path`` imports: ``from a import b`` imports the module a.b
    if there is one, else a. A module's own packages are left out: the interpreter loads
    them before it, whatever it imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in modules and m != name and m not in ancestors}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for top in LAYERS for p in (ROOT / top).rglob("*.py")}
    return {name: _imports(path, name, set(files)) for name, path in files.items()}


GRAPH = _graph()


def test_no_package_imports_one_above_it_or_beside_it() -> None:
    wrong = []
    for module, imported in GRAPH.items():
        mine = _layer(module)
        for other in imported:
            theirs = _layer(other)
            if LAYERS[theirs] > LAYERS[mine] or frozenset({mine, theirs}) in APART:
                wrong.append(f"{module} imports {other}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_modules_import_each_other_in_a_circle() -> None:
    circles = [c for c in _strongly_connected(GRAPH) if len(c) > 1]
    assert not circles, circles


def test_the_test_reads_the_whole_product() -> None:
    assert len(GRAPH) > 60
    assert {"praxis.bus.client", "praxis.workers.session.runner", "praxis.edge.app"} <= set(GRAPH)
    assert "praxis.schemas" in GRAPH["praxis.bus.client.commands"]
    assert "praxis.bus.client" in GRAPH["praxis.workers.session.runner"]


def test_every_import_goes_through_the_praxis_namespace() -> None:
    """The parts are installed as ``praxis.<part>`` only: an import of a bare ``bus`` or
    ``schemas`` works in a checkout (the folder is on the path) and fails once installed."""
    bare = []
    for path in [*(ROOT / top for top in LAYERS), ROOT / "tests"]:
        for file in path.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                bare += [
                    f"{file.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in LAYERS
                ]
    assert not bare, "\n".join(bare)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_session_policy_does_no_io() -> None:
    """The session's rules import only the schemas, each other and pure parts of the
    standard library: no bus, no NATS, no clock of their own, no asyncio."""
    pure = {"__future__", "dataclasses", "datetime", "typing", "collections", "enum", "operator"}
    found = []
    for file in (ROOT / "workers" / "session" / "policy").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                ours = name.startswith(("praxis.schemas", "praxis.workers.session.policy"))
                if not ours and name.split(".")[0] not in pure:
                    found.append(f"{file.name}: {name}")
    assert not found, found
