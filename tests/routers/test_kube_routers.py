"""The three Kubernetes routers behave as a Router must, through the real kubernetes client.

Each case loads the example manifests of examples/kubernetes/<type>/ into the fake API
server and builds the router from the router block of the example rollout, so the
examples are exercised too. ``KubeSetup.change_behind_back`` changes the split on the
server directly; test_kube_contract.py builds the contract-suite harness from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from canary.errors import RouterError
from canary.model import Weights
from canary.routers import gateway_api, istio, smi
from canary.routers.kube import api_for
from canary.routers.kube_weights import WeightedObjectRouter
from lab.fake_kube import FakeKube

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
Obj = dict[str, Any]


def _backends(obj: Obj, type_: str) -> list[Obj]:
    """The list holding the stable (first) and canary (second) entry in the examples."""
    spec = obj["spec"]
    if type_ == "gateway-api":
        return list(spec["rules"][0]["backendRefs"])
    if type_ == "istio":
        return list(spec["http"][0]["route"])
    return list(spec["backends"])


@dataclass(frozen=True)
class Case:
    type: str
    kind: str
    module: ModuleType

    def options(self) -> dict[str, Any]:
        rollout = yaml.safe_load((EXAMPLES / self.type / "rollout.yaml").read_text())
        return {k: v for k, v in rollout["spec"]["router"].items() if k != "type"}


CASES = {
    "gateway-api": Case("gateway-api", "HTTPRoute", gateway_api),
    "istio": Case("istio", "VirtualService", istio),
    "smi": Case("smi", "TrafficSplit", smi),
}


@dataclass
class KubeSetup:
    case: Case
    fake: FakeKube
    router: WeightedObjectRouter
    namespace: str
    name: str

    def stored(self) -> tuple[int | None, int | None]:
        """(stable, canary) weights exactly as the server holds them."""
        entries = _backends(self.fake.get(self.case.kind, self.namespace, self.name),
                            self.case.type)
        return entries[0].get("weight"), entries[1].get("weight")

    def change_behind_back(self, weights: Weights) -> None:
        def change(obj: Obj) -> None:
            entries = _backends(obj, self.case.type)
            entries[0]["weight"], entries[1]["weight"] = weights.stable, weights.canary

        self.fake.modify(self.case.kind, self.namespace, self.name, change)

    def patches(self) -> list[int]:
        return [r.status for r in self.fake.requests if r.method == "PATCH"]


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def make_setup(fake: FakeKube, case: Case, **overrides: Any) -> KubeSetup:
    fake.load(EXAMPLES / case.type / "manifests.yaml")
    config = case.module.Config.model_validate({**case.options(), **overrides})
    router = case.module.from_config(config, api=api_for(fake.configuration()))
    name = next(v for k, v in config.model_dump().items()
                if k in ("http_route", "virtual_service", "traffic_split"))
    return KubeSetup(case, fake, router, config.namespace, name)


@pytest.fixture(params=sorted(CASES))
def kube(request: pytest.FixtureRequest, fake: FakeKube) -> Iterator[KubeSetup]:
    setup = make_setup(fake, CASES[request.param])
    yield setup
    setup.router.close()


@pytest.mark.parametrize("canary", [0, 5, 25, 50, 100])
def test_set_then_get_returns_the_split(kube: KubeSetup, canary: int) -> None:
    kube.router.set_weights(Weights(canary=canary))
    assert kube.router.get_weights() == Weights(canary=canary)
    assert kube.stored() == (100 - canary, canary)


def test_examples_start_all_on_stable(kube: KubeSetup) -> None:
    assert kube.router.get_weights() == Weights(canary=0)


def test_setting_the_same_split_again_writes_nothing(kube: KubeSetup) -> None:
    kube.router.set_weights(Weights(canary=25))
    version = kube.fake.get(kube.case.kind, kube.namespace, kube.name)["metadata"]
    kube.router.set_weights(Weights(canary=25))
    assert kube.patches() == [200]
    after = kube.fake.get(kube.case.kind, kube.namespace, kube.name)["metadata"]
    assert after["resourceVersion"] == version["resourceVersion"]


def test_reset_sends_everything_to_stable(kube: KubeSetup) -> None:
    kube.router.set_weights(Weights(canary=50))
    kube.router.set_weights(Weights(canary=0))
    assert kube.router.get_weights() == Weights(canary=0)
    assert kube.stored() == (100, 0)


def test_writes_are_guarded_json_patches_under_the_field_manager(kube: KubeSetup) -> None:
    kube.router.set_weights(Weights(canary=5))
    (patch,) = [r for r in kube.fake.requests if r.method == "PATCH"]
    assert patch.content_type == "application/json-patch+json"
    assert patch.query["fieldManager"] == ["canary"]


def test_split_changed_on_the_server_is_what_get_weights_reports(kube: KubeSetup) -> None:
    kube.router.set_weights(Weights(canary=5))
    kube.change_behind_back(Weights(canary=40))
    assert kube.router.get_weights() == Weights(canary=40)
    kube.router.set_weights(Weights(canary=5))  # level-triggered: re-applied from a fresh read
    assert kube.stored() == (95, 5)


def test_a_write_between_read_and_patch_is_retried_and_kept(kube: KubeSetup) -> None:
    def other_writer() -> None:
        def change(obj: Obj) -> None:
            obj["metadata"].setdefault("labels", {})["team"] = "payments"
            entries = _backends(obj, kube.case.type)
            entries[0]["weight"], entries[1]["weight"] = 50, 50

        kube.fake.modify(kube.case.kind, kube.namespace, kube.name, change)

    kube.fake.interfere(other_writer)
    kube.router.set_weights(Weights(canary=25))
    assert kube.patches() == [422, 200]  # the resourceVersion test failed once, as on a cluster
    assert kube.router.get_weights() == Weights(canary=25)
    obj = kube.fake.get(kube.case.kind, kube.namespace, kube.name)
    assert obj["metadata"]["labels"] == {"team": "payments"}  # their change survived ours


def test_a_409_conflict_is_retried(kube: KubeSetup) -> None:
    kube.fake.fail_next(409, methods=("PATCH",))
    kube.router.set_weights(Weights(canary=25))
    assert kube.patches() == [409, 200]
    assert kube.router.get_weights() == Weights(canary=25)


def test_endless_conflicts_give_up_with_a_router_error(kube: KubeSetup) -> None:
    kube.router.set_weights(Weights(canary=5))
    kube.fake.interfere(lambda: kube.change_behind_back(Weights(canary=5)), times=100)
    with pytest.raises(RouterError, match="changed under every one of 6 attempts"):
        kube.router.set_weights(Weights(canary=50))
    assert kube.patches() == [200] + [422] * 6
    assert kube.router.get_weights() == Weights(canary=5)


def test_a_patch_the_server_finds_invalid_is_not_retried_as_a_conflict(kube: KubeSetup) -> None:
    # A 422 with no write in between (an admission webhook, a schema limit) is final.
    kube.fake.fail_next(422, times=None, methods=("PATCH",))
    with pytest.raises(RouterError, match=r"rejected the update of .* \(422\)"):
        kube.router.set_weights(Weights(canary=5))
    assert kube.patches() == [422]
    assert kube.router.get_weights() == Weights(canary=0)


@pytest.mark.parametrize("method", ["PATCH", "GET"])
@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_raise_router_error_and_keep_the_split(
    kube: KubeSetup, status: int, method: str
) -> None:
    kube.router.set_weights(Weights(canary=25))
    kube.fake.fail_next(status, methods=(method,))
    with pytest.raises(RouterError, match=f"answered {status}") as info:
        kube.router.set_weights(Weights(canary=50))
    assert "shop/checkout" in str(info.value)
    assert kube.router.get_weights() == Weights(canary=25)


def test_a_missing_object_is_a_router_error_naming_it(kube: KubeSetup) -> None:
    kube.router.set_weights(Weights(canary=25))
    kube.fake.delete(kube.case.kind, kube.namespace, kube.name)
    for call in (kube.router.ensure, kube.router.get_weights,
                 lambda: kube.router.set_weights(Weights(canary=0))):
        with pytest.raises(RouterError, match=f"{kube.case.kind} shop/checkout not found"):
            call()


@pytest.mark.parametrize("status, words", [(401, "not authenticated"),
                                           (403, "permission denied")])
def test_auth_errors_say_what_permission_is_needed(
    kube: KubeSetup, status: int, words: str
) -> None:
    kube.fake.fail_next(status, methods=("PATCH",))
    with pytest.raises(RouterError, match=words) as info:
        kube.router.set_weights(Weights(canary=5))
    assert "get and patch" in str(info.value)
    assert kube.router.get_weights() == Weights(canary=0)


def test_a_server_that_does_not_answer_times_out(fake: FakeKube) -> None:
    setup = make_setup(fake, CASES["gateway-api"], timeout="200ms")
    fake.delay = 5.0
    try:
        with pytest.raises(RouterError, match=r"did not answer within 0\.2s"):
            setup.router.get_weights()
    finally:
        setup.router.close()


def test_an_unreachable_server_is_a_router_error(fake: FakeKube) -> None:
    setup = make_setup(fake, CASES["smi"])
    fake.stop()
    try:
        with pytest.raises(RouterError, match="cannot reach the Kubernetes API"):
            setup.router.set_weights(Weights(canary=5))
    finally:
        setup.router.close()
