"""The package's layers hold (pyproject.toml's import-linter contracts, docs/architecture.md)
and no module imports itself through others: a circle is how layers start to blur."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_the_layer_contracts_are_kept() -> None:
    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_circles() -> None:
    # Imports under TYPE_CHECKING only exist for the type checker; every other import,
    # function-level ones included, counts.
    graph = grimp.build_graph("canary", exclude_type_checking_imports=True)
    assert circles(graph) == []


def test_a_circle_is_found_when_there_is_one(tmp_path: Path) -> None:
    pkg = tmp_path / "circled"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from circled import b\n")
    (pkg / "b.py").write_text("def f() -> None:\n    from circled import a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert circles(grimp.build_graph("circled")) == [["circled.a", "circled.b"]]
    finally:
        sys.path.remove(str(tmp_path))
