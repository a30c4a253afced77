"""No import circles in the project's packages (docs/architecture.md).

Every ``import`` statement counts, those inside functions too: a lazy import only hides a circle until the day
someone moves it to the top of the file.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fusion", "calibration", "detection")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Map each module of ``packages`` under ``root`` to the project modules it imports.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``. Importing a module
    runs its packages' ``__init__`` files, but those edges are left out: an ``__init__`` that re-exports its
    children would otherwise close a circle with every child that imports a sibling.
    """
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `import a.b.c` where c is a name: the module a.b
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_import_cycles():
    graph = import_graph(ROOT, PACKAGES)
    assert len(graph) > 50 and graph["fusion.cli"], "the walk found the project's modules"
    cycles = find_cycles(graph)
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_walk_finds_a_cycle_added_in_a_scratch_module(tmp_path):
    """A scratch package beside a copy of the real graph: a circle through a lazy, relative import is found."""
    pkg = tmp_path / "scratch"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\nfrom scratch.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n    return g\n")
    (pkg / "c.py").write_text("from scratch import a\n\ndef g():\n    return a\n")
    (pkg / "d.py").write_text("from scratch.a import b  # a name of a, not a module\n")
    graph = import_graph(tmp_path, ("scratch",))
    assert graph["scratch.sub.b"] == {"scratch.c"} and graph["scratch.d"] == {"scratch.a"}
    assert find_cycles(graph) == [["scratch.a", "scratch.c", "scratch.sub.b"]]
    (pkg / "c.py").write_text("def g():\n    return 1\n")  # the circle broken
    assert find_cycles(import_graph(tmp_path, ("scratch",))) == []
