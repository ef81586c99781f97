"""A router or store whose extra is not installed: exit 2 naming the pip install.

The package is hidden from import (``sys.modules[name] = None`` makes ``import name``
raise ModuleNotFoundError, as when it is absent); the wheel test does the same with a
venv that really lacks psycopg.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app

ROLLOUT = """\
apiVersion: canary/v1
kind: Rollout
metadata: {{name: checkout}}
spec:
  service: checkout
  version: "2.0.0"
  stableVersion: "1.0.0"
  router:
{router}
  stages: [5, 100]
  analysis: {{policy: default}}
"""


def hide(monkeypatch: pytest.MonkeyPatch, package: str, *modules: str) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.mark.parametrize("router", ["gateway-api", "istio", "smi"])
def test_kubernetes_router_without_the_extra(router: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "kubernetes", "canary.routers.kube", "canary.routers.gateway_api",
         "canary.routers.istio", "canary.routers.smi")
    f = tmp_path / "r.yaml"
    f.write_text(ROLLOUT.format(router=f"    type: {router}\n    name: checkout"))
    res = CliRunner().invoke(app, ["validate", str(f)])
    assert res.exit_code == 2
    assert f"router type '{router}' needs the kubernetes package" in res.output
    assert "pip install 'canary[kubernetes]'" in res.output


def test_haproxy_router_needs_no_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "kubernetes", "canary.routers.kube")
    hide(monkeypatch, "psycopg", "canary.store.postgres", "canary.store.pg_session")
    f = tmp_path / "r.yaml"
    f.write_text(ROLLOUT.format(router="    type: haproxy\n    address: 127.0.0.1:1\n"
                                "    backend: b\n    stable: s\n    canary: c"))
    res = CliRunner().invoke(app, ["validate", str(f)])
    assert res.exit_code == 0, res.output


def test_postgres_store_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "psycopg", "canary.store.postgres", "canary.store.pg_session")
    res = CliRunner().invoke(app, ["status", "checkout", "--store",
                                   "postgresql://127.0.0.1:1/none"])
    assert res.exit_code == 2
    assert "pip install 'canary[postgres]'" in res.output
