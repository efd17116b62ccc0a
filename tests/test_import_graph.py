"""The import graph of harness, read with ast (module-level and function-level imports alike).

The packages follow the pipeline, left to right: core < sources < series < kernel < vm < workloads <
judge < report < orchestrate < cli. A package imports only itself and packages to its left; so no two
packages import each other and there is no cycle between packages. Modules import each other plainly:
no import by string (importlib, __import__), no module cycle, and no harness import inside a function
(the late import that used to hide a dependency; third-party ones may stay late for import time). The
one exception is the entry point's dispatch: `kwb X` imports only X's command module, for start-up time.
The checker is tested on a small synthetic package first, so a pass below means something.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.core.paths import project_root

LAYERS = ("core", "sources", "series", "kernel", "vm", "workloads", "judge", "report", "orchestrate", "cli")
STRING_IMPORTS = ("importlib", "__import__")


@dataclass(frozen=True)
class Edge:
    """One import of one harness module by another."""

    src: str
    dst: str
    line: int
    in_function: bool


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path, package: str) -> dict[str, Path]:
    return {_module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             known: dict[str, Path]) -> Iterator[str]:
    """The modules ``node`` imports: ``from a import b`` is a.b when that is a module, else a."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in known else base


def _walk(tree: ast.Module) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it sits inside a function (a class body at module level does not)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, inside = stack.pop()
        yield node, inside
        deeper = inside or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        stack.extend((child, deeper) for child in ast.iter_child_nodes(node))


def read_graph(root: Path, package: str = "harness") -> tuple[list[Edge], list[str]]:
    """(imports between ``package``'s modules, imports by string) of the tree under ``root``."""
    known = _modules(root, package)
    edges: list[Edge] = []
    by_string: list[str] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, inside in _walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, module, path.name == "__init__.py", known):
                    if target.split(".")[0] in STRING_IMPORTS:
                        by_string.append(f"{module}:{node.lineno} imports {target}")
                    if target == package or target.startswith(package + "."):
                        edges.append(Edge(module, target, node.lineno, inside))
            elif isinstance(node, ast.Name) and node.id == "__import__":
                by_string.append(f"{module}:{node.lineno} calls __import__")
    return edges, by_string


def layer(module: str) -> str:
    """The package of ``harness.<package>.…`` ("" for the top-level package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward(edges: list[Edge]) -> list[str]:
    """Imports of a package to the right of the importer's (and of packages not in LAYERS)."""
    bad = []
    for e in edges:
        src, dst = layer(e.src), layer(e.dst)
        if src == dst or not dst:
            continue
        if src not in LAYERS or dst not in LAYERS:
            bad.append(f"{e.src}:{e.line} imports {e.dst}: {src or dst} is not a known layer")
        elif LAYERS.index(dst) > LAYERS.index(src):
            bad.append(f"{e.src}:{e.line} imports {e.dst} ({src} may not import {dst})")
    return bad


def two_way(edges: list[Edge]) -> list[str]:
    """Pairs of packages that import each other."""
    pairs = {(layer(e.src), layer(e.dst)) for e in edges if layer(e.src) != layer(e.dst)}
    return sorted(f"{a} <-> {b}" for a, b in pairs if (b, a) in pairs and a < b)


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The module cycles (strongly connected components of more than one module, or a self-import)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.src, set()).add(e.dst)
        graph.setdefault(e.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; harness is ~100 modules, recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_finds_what_it_forbids(tmp_path: Path) -> None:
    _write(tmp_path, {
        "harness/__init__.py": "",
        "harness/core/__init__.py": "",
        "harness/core/a.py": "def f():\n    from harness.cli import main\n",   # upward, late
        "harness/cli/__init__.py": "from . import b\n",
        "harness/cli/b.py": "from harness.cli import c\nimport importlib\n",
        "harness/cli/c.py": "from harness.cli import b\nx = __import__('os')\n",
        "harness/sources/__init__.py": "from harness.series import d\n",          # upward and two-way
        "harness/series/__init__.py": "",
        "harness/series/d.py": "from harness.sources import __name__ as n\n",
    })
    edges, by_string = read_graph(tmp_path)
    assert [(e.src, e.dst, e.in_function) for e in edges if e.src == "harness.core.a"] == [
        ("harness.core.a", "harness.cli", True)]
    assert ("harness.cli", "harness.cli.b") in {(e.src, e.dst) for e in edges}  # relative import
    assert sorted(by_string) == ["harness.cli.b:2 imports importlib", "harness.cli.c:2 calls __import__"]
    assert len(upward(edges)) == 2
    assert two_way(edges) == ["series <-> sources"]
    assert sorted(cycles(edges)) == [["harness.cli.b", "harness.cli.c"],
                                     ["harness.series.d", "harness.sources"]]


@pytest.fixture(scope="module")
def graph() -> tuple[list[Edge], list[str]]:
    """The graph of the real harness package."""
    return read_graph(project_root())


def test_every_harness_package_is_a_layer(graph: tuple[list[Edge], list[str]]) -> None:
    packages = {p.name for p in (project_root() / "harness").iterdir()
                if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


def test_no_package_imports_one_to_its_right(graph: tuple[list[Edge], list[str]]) -> None:
    edges, _ = graph
    assert len(edges) > 200, "the reader found too few imports to mean anything"
    assert upward(edges) == []
    assert two_way(edges) == []


# kwb's entry point imports the command module a command word names, and only that one (start-up time)
LAZY_DISPATCH = "harness.cli"


def test_no_import_cycle_and_no_import_by_string(graph: tuple[list[Edge], list[str]]) -> None:
    edges, by_string = graph
    assert cycles(edges) == []
    assert by_string == []


def test_harness_imports_harness_at_module_level_only(graph: tuple[list[Edge], list[str]]) -> None:
    edges, _ = graph
    late = [f"{e.src}:{e.line} imports {e.dst} inside a function" for e in edges
            if e.in_function and not (e.src == LAZY_DISPATCH and e.dst.startswith(f"{LAZY_DISPATCH}."))]
    assert late == []
