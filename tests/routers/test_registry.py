"""The router registry: known types only, options validated with the field named, adapter
modules imported only when used, and the example rollouts' router blocks valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from canary.config.spec import load_rollout
from canary.errors import InputError
from canary.model import Weights
from canary.routers import registry
from canary.routers.base import Router
from canary.routers.haproxy import HAProxyRouter
from canary.routers.null import NullRouter
from canary.specs import RouterSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rollouts"


def test_unknown_type_is_an_input_error_naming_the_known_ones() -> None:
    with pytest.raises(InputError, match="unknown router type 'haproxyy'") as caught:
        registry.router_config_model("haproxyy")
    assert caught.value.field == "router.type"
    for name in registry.ROUTER_TYPES:
        assert name in str(caught.value)
    with pytest.raises(InputError):
        registry.build_router(RouterSpec(type="HAProxy", options={}))


def test_every_type_has_a_config_model() -> None:
    assert set(registry.ROUTER_TYPES) == {"haproxy", "nginx", "command", "http", "null",
                                          "gateway-api", "istio", "smi"}
    for name in registry.ROUTER_TYPES:
        assert issubclass(registry.router_config_model(name), BaseModel)


def test_builds_a_router_from_camel_case_options() -> None:
    router = registry.build_router(RouterSpec(type="haproxy", options={
        "address": "127.0.0.1:9999", "backend": "checkout", "stable": ["s1", "s2"],
        "canary": "c1", "timeout": "3s"}))
    assert isinstance(router, HAProxyRouter) and isinstance(router, Router)
    assert (router.address, router.canary, router.timeout) == (("127.0.0.1", 9999), ("c1",), 3)


def test_null_router_remembers_in_memory() -> None:
    router = registry.build_router(RouterSpec(type="null"))
    assert isinstance(router, NullRouter)
    router.set_weights(Weights(canary=5))
    assert router.get_weights() == Weights(canary=5)


@pytest.mark.parametrize(("options", "field", "message"), [
    ({"socket": "/s", "backend": "b", "stable": "s"}, "router.canary", "Field required"),
    ({"socket": "/s", "backend": "b", "stable": "s", "canary": "c", "weight": 1},
     "router.weight", "Extra inputs"),
    ({"socket": "/s", "backend": "b", "stable": "s", "canary": "c", "timeout": "soon"},
     "router.timeout", "duration"),
])
def test_invalid_options_name_the_field(options: dict[str, object], field: str,
                                        message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        registry.build_router(RouterSpec(type="haproxy", options=options))
    assert caught.value.field == field


def test_a_type_whose_module_is_missing_is_an_input_error(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setitem(registry.ROUTER_TYPES, "ghost", "canary.routers.ghost")
    with pytest.raises(InputError, match="'ghost' cannot be used: its adapter module"):
        registry.router_config_model("ghost")


def test_adapters_are_imported_only_when_used() -> None:
    probe = ("import sys; import canary.routers.registry as r; "
             "before = {m for m in sys.modules if m.startswith('canary.routers.')}; "
             "r.router_config_model('nginx'); "
             "after = {m for m in sys.modules if m.startswith('canary.routers.')}; "
             "print(sorted(before)); print(sorted(after - before))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout.splitlines()
    # features.py is the shared vocabulary of what routers can do, not an adapter
    assert out == ["['canary.routers.base', 'canary.routers.features', "
                   "'canary.routers.registry']",
                   "['canary.routers.nginx', 'canary.routers.nginx_blocks', "
                   "'canary.routers.nginx_routes']"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_rollouts_load_and_build(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_API_TOKEN", "example-token")
    spec = load_rollout(str(path))
    router = registry.build_router(spec.router)
    assert isinstance(router, Router)
