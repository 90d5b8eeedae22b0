"""The import structure of ``src/ringline``: no import circle, and imports flow downward
through the layers that docs/architecture.md draws::

    cli                      the command line
     │
    server                   the server: hub, sessions, WebSocket, REST, stores, webhooks
     │
    ringline, testing        the package's face (re-exports of core and client, the version)
     │                       and the helpers for tests of SDK users
    client ──► media         the Python SDK; the media layer (aiortc) it drives
     │          │
    core                     pure: the switchboard, enums, errors, the wire protocol's facts

An arrow goes from the importer to the imported. Within a layer, packages depend one
way (``client`` imports ``media``, never the reverse). Every import counts: at the top
of a module, inside a function, or under ``if TYPE_CHECKING:`` (a circle that only a
type annotation closes is still two concepts that cannot be read apart).

Modules are read with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "ringline"

#: The layer of each group of modules (a subpackage, or a top-level module): a module
#: may import modules of its own layer or of a lower one.
LAYERS: dict[str, int] = {
    "core": 0,
    "client": 1,
    "media": 1,
    "ringline": 2,  # ringline/__init__.py: re-exports core and client; __version__
    "testing": 2,
    "server": 3,
    "cli": 4,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def group(module: str) -> str:
    """``ringline.server.store.sqlite`` → ``server``; ``ringline`` → ``ringline``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` names: itself, or the package holding it."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """The modules of ours that ``module`` imports, with the line of each import."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target is not None:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                # `from pkg import mod` imports the module; `from mod import name`, mod.
                full = f"{source}.{alias.name}"
                target = full if full in MODULES else _resolve(source)
                if target is not None:
                    yield target, node.lineno


GRAPH: dict[str, dict[str, int]] = {
    m: {t: line for t, line in sorted(imports_of(m), key=lambda x: -x[1]) if t != m} for m in MODULES
}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _show(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = set(cycle)
    arrows = [
        f"  {a} -> {b} (line {line})" for a in cycle for b, line in graph.get(a, {}).items() if b in members
    ]
    return "\n".join(arrows)


def test_every_module_was_read() -> None:
    # A sanity check of the walk itself, so an empty graph cannot pass the tests below.
    assert {"ringline", "ringline.core.machine", "ringline.server.hub", "ringline.cli"} <= set(MODULES)
    assert "ringline.server.session" in GRAPH["ringline.server.hub"]
    assert "ringline.core.protocol" in GRAPH["ringline.core.machine"]
    assert set(map(group, MODULES)) == set(LAYERS), "a new top-level module or package: give it a layer"


def test_no_module_import_circle() -> None:
    cycles = _cycles({m: set(targets) for m, targets in GRAPH.items()})
    assert not cycles, "import circles between modules:\n" + "\n\n".join(_show(c, GRAPH) for c in cycles)


def test_no_package_import_circle() -> None:
    # client and media share a layer: between them, too, imports go one way.
    groups: dict[str, dict[str, int]] = {}
    for m, targets in GRAPH.items():
        for t, line in targets.items():
            if group(t) != group(m):
                groups.setdefault(group(m), {}).setdefault(group(t), line)
    cycles = _cycles({g: set(targets) for g, targets in groups.items()})
    detail = [
        f"  {m} -> {t} (line {line})"
        for c in cycles
        for m, targets in GRAPH.items()
        for t, line in targets.items()
        if group(m) in c and group(t) in c and group(m) != group(t)
    ]
    assert not cycles, f"import circles between packages {cycles}:\n" + "\n".join(detail)


def test_imports_flow_down_the_layers() -> None:
    upward = [
        f"  {m} ({group(m)}) -> {t} ({group(t)}), line {line}"
        for m, targets in GRAPH.items()
        for t, line in targets.items()
        if LAYERS[group(t)] > LAYERS[group(m)]
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_core_does_no_io() -> None:
    # The core is pure (docs/architecture.md): no event loop, sockets, HTTP or SQL.
    forbidden = {"asyncio", "aiohttp", "socket", "sqlite3", "asyncpg", "aiortc"}
    found = []
    for m, path in MODULES.items():
        if group(m) != "core":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            found += [f"  {m}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert not found, "the core imports I/O:\n" + "\n".join(found)
