"""The router blocks of the Kubernetes adapters, and how the adapters find their cluster.

Router blocks are validated at the YAML edge (unknown fields, selectors, durations); the
client is set up from a kubeconfig only when first used, and a kubeconfig that cannot be
used is a RouterError saying which one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.config import incluster_config
from pydantic import ValidationError

from canary.config.spec import load_any, load_rollout
from canary.errors import InputError, RouterError
from canary.model import Weights
from canary.routers import gateway_api, istio, smi
from canary.routers.base import Router
from canary.routers.registry import build_router
from canary.specs import RouterSpec
from lab.fake_kube import FakeKube

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
GW: dict[str, Any] = {"httpRoute": "web", "stableService": "a", "canaryService": "b"}
IS: dict[str, Any] = {"virtualService": "web", "host": "web", "stableSubset": "v1",
                      "canarySubset": "v2"}
SM: dict[str, Any] = {"trafficSplit": "web", "stableService": "a", "canaryService": "b"}


def test_camel_case_as_in_yaml_and_defaults() -> None:
    c = gateway_api.Config.model_validate({**GW, "ruleName": "api", "fieldManager": "ci",
                                           "conflictRetries": 2, "timeout": "1m"})
    assert (c.http_route, c.rule_name, c.field_manager, c.conflict_retries, c.timeout) == (
        "web", "api", "ci", 2, 60.0)
    d = smi.Config.model_validate(SM)
    assert (d.namespace, d.timeout, d.field_manager, d.version) == (
        "default", 10.0, "canary", "v1alpha2")
    assert istio.Config.model_validate(IS).version == "v1beta1"


@pytest.mark.parametrize("model, options, words", [
    (gateway_api.Config, {**GW, "weight": 5}, "Extra inputs are not permitted"),
    (gateway_api.Config, {**GW, "rule": 0, "ruleName": "x"}, "not with rule and ruleName"),
    (gateway_api.Config, {**GW, "canaryService": "a"}, "must be different"),
    (gateway_api.Config, {**GW, "timeout": "soon"}, "expected a duration"),
    (gateway_api.Config, {**GW, "version": "v1alpha2"}, "'v1' or 'v1beta1'"),
    (istio.Config, {**IS, "canarySubset": "v1"}, "same destination"),
    (istio.Config, {**IS, "route": "a", "routeIndex": 0}, "not both"),
    (smi.Config, {**SM, "version": "v1alpha1"}, "v1alpha2"),
    (smi.Config, {"trafficSplit": "web", "stableService": "a"}, "canaryService"),
])
def test_invalid_router_blocks_are_refused(model: Any, options: dict[str, Any],
                                           words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        model.model_validate(options)


@pytest.mark.parametrize("type_, options", [("gateway-api", GW), ("istio", IS), ("smi", SM)])
def test_the_registry_builds_them_without_touching_a_cluster(
    type_: str, options: dict[str, Any], tmp_path: Path
) -> None:
    # A kubeconfig that does not exist: building must not read it, only using must.
    router = build_router(RouterSpec(type_, {**options, "kubeconfig": str(tmp_path / "no")}))
    assert isinstance(router, Router)
    with pytest.raises(RouterError, match=f"kubeconfig {tmp_path / 'no'}"):
        router.ensure()


def test_the_registry_reports_a_bad_field_as_input_error() -> None:
    with pytest.raises(InputError, match="router.stableSubset"):
        build_router(RouterSpec("istio", {**IS, "stableSubset": 3}))


@pytest.mark.parametrize("type_", ["gateway-api", "istio", "smi"])
def test_the_example_rollouts_load(type_: str) -> None:
    path = str(EXAMPLES / type_ / "rollout.yaml")
    assert load_any(path) == "Rollout"  # what `canary validate` checks, policy included
    spec = load_rollout(path)
    assert spec.router.type == type_
    assert spec.router.options["namespace"] == "shop"


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(token="t0ken") as server:
        server.load(EXAMPLES / "smi" / "manifests.yaml")
        yield server


def smi_router(**options: Any) -> smi.SMIRouter:
    config = smi.Config.model_validate({"namespace": "shop", "trafficSplit": "checkout",
                                        "stableService": "checkout-stable",
                                        "canaryService": "checkout-canary", **options})
    return smi.from_config(config)


def test_a_kubeconfig_file_and_its_token_are_used(fake: FakeKube, tmp_path: Path) -> None:
    path = fake.write_kubeconfig(tmp_path / "config", context="lab")
    router = smi_router(kubeconfig=path, context="lab")
    try:
        router.set_weights(Weights(canary=5))
        assert router.get_weights() == Weights(canary=5)
    finally:
        router.close()


def test_a_wrong_token_is_reported_as_not_authenticated(fake: FakeKube, tmp_path: Path) -> None:
    fake.token = "rotated"
    router = smi_router(kubeconfig=fake.write_kubeconfig(tmp_path / "config"))
    fake.token = "t0ken"
    try:
        with pytest.raises(RouterError, match=r"not authenticated \(401\)"):
            router.get_weights()
    finally:
        router.close()


def test_an_unknown_context_names_the_kubeconfig(fake: FakeKube, tmp_path: Path) -> None:
    path = fake.write_kubeconfig(tmp_path / "config")
    router = smi_router(kubeconfig=path, context="prod")
    with pytest.raises(RouterError, match=f"from kubeconfig {path}, context prod"):
        router.ensure()


def test_in_a_pod_without_a_service_account_the_error_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    with pytest.raises(RouterError, match="in-cluster service account"):
        smi_router().ensure()
