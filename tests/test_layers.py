"""The architecture, checked: imports only point down the layers, no module imports itself back
through others, and no folder grows into a second engine.

    front ends   cli, web, bench         parse and present
    api          vsearch (api/)          one call per user action
    engine       indexer, live, tag      runs that use the parts
    evidence     evidence                the kinds of evidence a moment carries, each over its parts
    parts        model > video           the model may use video's frame specs, not the reverse
    storage      search                  catalog, vectors, queries
    base         core, data              errors, the home layout, words; shipped data

Every import counts, those inside functions and under TYPE_CHECKING too: each says that one
module depends on another. The folders come from pyproject.toml, as setuptools installs them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
# Higher imports lower. Two packages of one rank do not import each other.
RANK = {
    "vsearch.cli": 6,
    "vsearch.web": 5, "vsearch.bench": 5,
    "vsearch": 4,
    "vsearch.indexer": 3, "vsearch.live": 3, "vsearch.tag": 3,
    "vsearch.evidence": 2.75,
    "vsearch.model": 2.5,
    "vsearch.video": 2,
    "vsearch.search": 1,
    "vsearch.core": 0, "vsearch.data": 0,
}
MAX_SHARE = 0.30  # of the package's lines, in any one folder


def package_folders() -> dict[str, Path]:
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {package: REPO / folder for package, folder in mapping.items()}


def modules() -> dict[str, Path]:
    """Every module of the package by its installed name."""
    found = {}
    for package, folder in package_folders().items():
        files = folder.glob("*.py") if package == "vsearch" else folder.rglob("*.py")
        for f in files:
            parts = [*package.split("."), *f.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = f
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The vsearch modules `name` imports (the module itself where `from pkg import x` names a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != name}


def layer(module: str) -> str:
    """The package a module belongs to for layering: its sub-package, or the root (the api)."""
    parts = module.split(".")
    sub = ".".join(parts[:2])
    return sub if sub in RANK else "vsearch"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_imports_point_down_the_layers(graph: dict[str, set[str]]) -> None:
    wrong = []
    for source, targets in graph.items():
        for target in targets:
            a, b = layer(source), layer(target)
            if a != b and RANK[b] >= RANK[a]:
                wrong.append(f"{source} -> {target}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(sorted(wrong))


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    """Tarjan's strongly connected components: any with two modules or more is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_no_folder_holds_more_than_its_share_of_the_code() -> None:
    lines: dict[str, int] = defaultdict(int)
    for package, folder in package_folders().items():
        files = folder.glob("*.py") if package == "vsearch" else folder.rglob("*.py")
        lines[package] += sum(len(f.read_text().splitlines()) for f in files)
    total = sum(lines.values())
    heavy = {p: f"{n / total:.0%}" for p, n in lines.items() if n > MAX_SHARE * total}
    assert not heavy, f"folders over {MAX_SHARE:.0%} of {total} lines: {heavy}"


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The walker itself: a module of the storage layer importing the indexer is caught."""
    bad = tmp_path / "query.py"
    bad.write_text("from vsearch.indexer.pipeline import Indexer\ndef f():\n    from vsearch.video import decode\n")
    found = imports("vsearch.search.query", bad, {"vsearch.indexer.pipeline", "vsearch.video.decode", "vsearch.video"})
    assert found == {"vsearch.indexer.pipeline", "vsearch.video.decode"}
    assert RANK[layer("vsearch.indexer.pipeline")] > RANK[layer("vsearch.search.query")]
