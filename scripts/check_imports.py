"""Check the shape of ``src/hats``: the package layers and no package cycles.

Usage (from anywhere; CI runs it)::

    .venv/bin/python scripts/check_imports.py

A *package* is a first-level name under ``hats`` (``hats.image``,
``hats.errors``, …). Every ``import`` and ``from … import`` in ``src/hats``
counts, at module level or inside a function (a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:``. The script reads the
sources with :mod:`ast` and imports nothing, so it runs without the
dependencies installed.

Two rules, both from ``docs/ARCHITECTURE.md`` ("Layers"):

1. **Layers.** :data:`LAYERS` lists the packages from the top (entry points)
   to the bottom (the leaves). A package may import only packages in *lower*
   layers; packages in the same layer are independent of each other.
2. **No cycles** between packages.

:data:`ALLOWED` lists the known exceptions, each with its reason; an
exception that is no longer needed is itself an error (so the list only
shrinks). Every package must appear in :data:`LAYERS`. Exit status 0 when the
shape holds, else 1 with one line per problem.

Why a script and not import-linter: it adds no dependency (no lock refresh),
counts lazy imports, and its exceptions carry their reasons next to them.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

#: From the top (may import everything below) to the bottom (imports nothing of ours).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("launcher",),
    ("vm",),
    ("demo",),
    ("orchestrator", "tvs", "stage1", "agent", "syslogd"),
    ("image", "attestation"),
    ("base", "packaging", "telemetry"),
    ("keys", "pb", "cliopts", "archive"),
    ("protocol",),
    ("fsio", "transport", "streamlimits", "agent_common", "textsafe", "console", "toolrun"),
    ("errors", "hashing", "reproducible", "sharetype", "cachedir"),
)

#: Known exceptions (importer, imported) → why. Remove an entry when its edge goes.
ALLOWED: Mapping[tuple[str, str], str] = {}

SRC = Path(__file__).resolve().parent.parent / "src"


def package_of(module: str) -> str | None:
    """``hats.image.build`` → ``image``; ``hats`` itself and other roots → None."""
    parts = module.split(".")
    if parts[0] != "hats" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name ``source`` (the module ``module``) imports, relative ones resolved.

    ``from X import Y`` yields ``X`` and ``X.Y`` (Y may be a submodule).
    """
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def package_graph(src: Path = SRC) -> dict[str, dict[str, set[str]]]:
    """importer package → imported package → the importing modules (within ``src/hats``)."""
    root = src / "hats"
    known = {
        _module_name(path, src) for path in root.rglob("*.py") if "__pycache__" not in path.parts
    }
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        module = _module_name(path, src)
        source = path.read_text(encoding="utf-8")
        importer = package_of(module)
        for target in imported_modules(source, module, path.name == "__init__.py"):
            imported = package_of(target)
            if importer is None or imported is None or imported == importer:
                continue
            # `from hats import __version__` names an attribute, not a package.
            if f"hats.{imported}" not in known:
                continue
            graph[importer][imported].add(module)
    for importer in {_p for m in known if (_p := package_of(m)) is not None}:
        graph.setdefault(importer, defaultdict(set))
    return graph


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def problems(
    graph: Mapping[str, Mapping[str, set[str]]],
    layers: tuple[tuple[str, ...], ...] = LAYERS,
    allowed: Mapping[tuple[str, str], str] = ALLOWED,
) -> list[str]:
    """Every way ``graph`` breaks the layers or has a cycle, one line each (empty: it holds)."""
    level = {package: depth for depth, layer in enumerate(layers) for package in layer}
    out = [
        f"package hats.{package} is in no layer (add it to LAYERS in scripts/check_imports.py)"
        for package in sorted(graph)
        if package not in level
    ]
    used: set[tuple[str, str]] = set()
    checked: dict[str, set[str]] = defaultdict(set)
    for importer in sorted(graph):
        for imported in sorted(graph[importer]):
            if (importer, imported) in allowed:
                used.add((importer, imported))
                continue
            checked[importer].add(imported)
            if importer not in level or imported not in level:
                continue
            if level[imported] <= level[importer]:
                where = ", ".join(sorted(graph[importer][imported]))
                kind = "the same layer as" if level[imported] == level[importer] else "above"
                out.append(f"hats.{importer} imports hats.{imported}, which is {kind} it ({where})")
    out.extend(
        "import cycle between packages: " + " <-> ".join(f"hats.{p}" for p in component)
        for component in cycles(checked)
    )
    out.extend(
        f"allowed exception hats.{a} -> hats.{b} is no longer needed: remove it from ALLOWED"
        for a, b in sorted(set(allowed) - used)
    )
    return out


def main() -> int:
    found = problems(package_graph())
    for line in found:
        print(f"check_imports: {line}", file=sys.stderr)
    if not found:
        print(f"check_imports: layers and package cycles OK ({len(ALLOWED)} allowed exceptions)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
