"""Every top-level import in canary/ maps to a declared dependency or to the standard library.

Run as a script (`python -m tests.packaging.imports`) or through its test. Modules that
belong to an optional extra (the Kubernetes routers, the PostgreSQL store) may import that
extra's packages; every other module only the base dependencies, so `pip install canary`
is enough for HAProxy, nginx, command and http routers and the SQLite store.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Which extra a module may draw on, besides the base dependencies.
EXTRA_MODULES = {
    "canary/routers/kube.py": "kubernetes",
    "canary/routers/gateway_api.py": "kubernetes",
    "canary/routers/istio.py": "kubernetes",
    "canary/routers/smi.py": "kubernetes",
    "canary/store/postgres.py": "postgres",
    "canary/store/pg_session.py": "postgres",
}


def _name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = {extra: {_name(r) for r in reqs}
              for extra, reqs in project["optional-dependencies"].items()}
    return base, extras


def top_level_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of every absolute import, including function-local ones."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.partition(".")[0]


def problems() -> list[str]:
    base, extras = declared()
    dists = packages_distributions()
    found: list[str] = []
    for path in sorted((REPO / "canary").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        allowed = base | extras.get(EXTRA_MODULES.get(rel, ""), set())
        for line, module in top_level_imports(path):
            if module == "canary" or module in sys.stdlib_module_names:
                continue
            names = {_name(d) for d in dists.get(module, [])}
            if not names:
                found.append(f"{rel}:{line}: imports {module}, which no installed "
                             "distribution provides")
            elif not names & allowed:
                found.append(f"{rel}:{line}: imports {module} (from {', '.join(sorted(names))})"
                             f", not declared for this module in pyproject.toml")
    return found


def main() -> int:
    found = problems()
    for p in found:
        print(p)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
