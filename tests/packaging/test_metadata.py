"""What pyproject.toml declares matches the code: imports, packages, extras, policies."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import canary
from canary.config.policyfile import PACKAGE_POLICIES
from canary.config.spec import resolve_policy_path
from canary.errors import InputError
from tests.packaging import imports

REPO = Path(__file__).resolve().parents[2]
TOOL = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_import_is_declared() -> None:
    assert imports.problems() == []


def test_the_import_check_catches_an_undeclared_package(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A base module importing the Kubernetes client (an extra) is reported."""
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "x.py").write_text("def f():\n    import kubernetes\n")
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    monkeypatch.setattr(imports, "REPO", tmp_path)
    assert imports.problems() == [
        "canary/x.py:2: imports kubernetes (from kubernetes), not declared for this module "
        "in pyproject.toml"]


def test_listed_packages_are_every_package_under_canary() -> None:
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "canary").rglob("__init__.py")}
    assert set(TOOL["packages"]) == on_disk | {"canary.policies"}
    assert TOOL["package-dir"] == {"canary.policies": "policies"}


def test_every_shipped_policy_is_package_data() -> None:
    patterns = TOOL["package-data"]["canary.policies"]
    assert "*.yaml" in patterns
    shipped = sorted(p.stem for p in (REPO / "policies").glob("*.yaml"))
    assert "default" in shipped
    for name in shipped:
        assert resolve_policy_path(name, base_dir="/nonexistent") == \
            str(PACKAGE_POLICIES / f"{name}.yaml")


def test_policy_path_adds_the_users_directories(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "house.yaml").write_text("kind: AnalysisPolicy\n")
    monkeypatch.setenv("CANARY_POLICY_PATH", f"/nonexistent:{mine}")
    monkeypatch.chdir(tmp_path)
    assert resolve_policy_path("house", base_dir=str(tmp_path)) == str(mine / "house.yaml")
    # The shipped ones stay reachable whatever the variable says.
    assert resolve_policy_path("default", base_dir=str(tmp_path)).endswith("default.yaml")
    with pytest.raises(InputError, match="'nope' not found"):
        resolve_policy_path("nope", base_dir=str(tmp_path))


def test_version_is_single_sourced() -> None:
    assert TOOL["dynamic"]["version"] == {"attr": "canary.__version__"}
    assert canary.__version__.count(".") == 2
