"""What each Kubernetes adapter finds in its object, and how it says what is wrong.

Objects here are written inline (smaller than the examples) to reach the corners: rule and
route selection, implicit weights, third backends, missing entries, subsets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from canary.errors import RouterError
from canary.model import Weights
from canary.routers import gateway_api, istio, smi
from canary.routers.kube import api_for
from lab.fake_kube import FakeKube

Obj = dict[str, Any]


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def ref(name: str, weight: int | None = None, **extra: Any) -> Obj:
    out: Obj = {"name": name, "port": 80, **extra}
    if weight is not None:
        out["weight"] = weight
    return out


def httproute(*rules: Obj) -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": list(rules)}}


def gw_router(fake: FakeKube, **options: Any) -> gateway_api.GatewayAPIRouter:
    config = gateway_api.Config.model_validate(
        {"namespace": "prod", "httpRoute": "web", "stableService": "web-v1",
         "canaryService": "web-v2", **options})
    return gateway_api.from_config(config, api=api_for(fake.configuration()))


@pytest.fixture
def routers() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for router in made:
        router.close()


# -- gateway-api ------------------------------------------------------------------------

def test_an_unset_backendref_weight_counts_as_1(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute({"backendRefs": [ref("web-v1"), ref("web-v2")]}))
    router = gw_router(fake)
    routers.append(router)
    assert router.get_weights() == Weights(canary=50)
    router.set_weights(Weights(canary=5))
    refs = fake.get("HTTPRoute", "prod", "web")["spec"]["rules"][0]["backendRefs"]
    assert [r["weight"] for r in refs] == [95, 5]


def test_weights_are_read_as_proportions(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute({"backendRefs": [ref("web-v1", 1), ref("web-v2", 3)]}))
    router = gw_router(fake)
    routers.append(router)
    assert router.get_weights() == Weights(canary=75)


@pytest.mark.parametrize("options, index", [
    ({"rule": 2}, 2),
    ({"ruleName": "beta"}, 2),
    ({"match": {"path": {"value": "/beta"}}}, 2),
    ({"match": {"headers": [{"name": "x-canary"}]}}, 1),
])
def test_the_rule_is_chosen_by_index_name_or_match(
    fake: FakeKube, routers: list[Any], options: Obj, index: int
) -> None:
    both = [ref("web-v1", 100), ref("web-v2", 0)]
    fake.create(httproute(
        {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
         "backendRefs": [ref("web-v1")]},
        {"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}], "backendRefs": both},
        {"name": "beta", "matches": [{"path": {"type": "PathPrefix", "value": "/beta"}}],
         "backendRefs": [ref("web-v2", 0), ref("web-v1", 100)]},
    ))
    router = gw_router(fake, **options)
    routers.append(router)
    router.set_weights(Weights(canary=25))
    rules = fake.get("HTTPRoute", "prod", "web")["spec"]["rules"]
    weights = {r["name"]: r.get("weight") for r in rules[index]["backendRefs"]}
    assert weights == {"web-v1": 75, "web-v2": 25}
    others = [r for i, r in enumerate(rules) if i != index]
    assert all(b.get("weight") in (None, 0, 100) for r in others for b in r["backendRefs"])


@pytest.mark.parametrize("options, message", [
    ({}, "2 rules referencing both web-v1 and web-v2; choose one with rule"),
    ({"rule": 5}, "has 2 rules; rule 5 does not exist"),
    ({"ruleName": "nope"}, "no rule named 'nope'"),
    ({"match": {"path": {"value": "/x"}}}, "no rule with a match containing"),
])
def test_an_unclear_or_missing_rule_is_reported(
    fake: FakeKube, routers: list[Any], options: Obj, message: str
) -> None:
    rule = {"backendRefs": [ref("web-v1", 100), ref("web-v2", 0)]}
    fake.create(httproute(rule, rule))
    router = gw_router(fake, **options)
    routers.append(router)
    with pytest.raises(RouterError, match=message):
        router.ensure()


def test_a_missing_backendref_names_what_was_found(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute({"backendRefs": [ref("web-v1", 100), ref("web-v3", 0)]}))
    router = gw_router(fake, rule=0)
    routers.append(router)
    with pytest.raises(RouterError, match=r"no entry for Service web-v2 \(found: Service "
                                          r"web-v1:80, Service web-v3:80\)"):
        router.set_weights(Weights(canary=5))
    assert not [r for r in fake.requests if r.method == "PATCH"]


def test_the_port_option_tells_backendrefs_apart(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute({"backendRefs": [
        ref("web-v1", 0, port=9090), ref("web-v1", 100), ref("web-v2", 0)]}))
    ambiguous = gw_router(fake, rule=0)
    routers.append(ambiguous)
    with pytest.raises(RouterError, match="appears 2 times"):
        ambiguous.ensure()
    router = gw_router(fake, rule=0, port=80)
    routers.append(router)
    router.set_weights(Weights(canary=50))
    refs = fake.get("HTTPRoute", "prod", "web")["spec"]["rules"][0]["backendRefs"]
    assert [r["weight"] for r in refs] == [0, 50, 50]


def test_a_third_weighted_backend_is_refused(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute({"backendRefs": [ref("web-v1", 90), ref("web-v2", 0),
                                           ref("legacy", 10)]}))
    router = gw_router(fake)
    routers.append(router)
    with pytest.raises(RouterError, match="Service legacy:80 also takes traffic"):
        router.get_weights()


def test_a_route_sending_traffic_nowhere_is_reported(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute({"backendRefs": [ref("web-v1", 0), ref("web-v2", 0)]}))
    router = gw_router(fake)
    routers.append(router)
    with pytest.raises(RouterError, match="both have weight 0"):
        router.get_weights()
    router.set_weights(Weights(canary=0))  # and canary can repair it
    assert router.get_weights() == Weights(canary=0)


def test_an_api_version_the_cluster_does_not_serve(routers: list[Any]) -> None:
    only_istio = [r for r in FakeKube().resources if r.group == "networking.istio.io"]
    with FakeKube(resources=only_istio) as fake:
        router = gw_router(fake)
        routers.append(router)
        with pytest.raises(RouterError, match=r"httproutes.gateway.networking.k8s.io/v1 is "
                                              r"not served .* is the HTTPRoute CRD installed"):
            router.ensure()


# -- istio ------------------------------------------------------------------------------

HOST = "reviews.prod.svc.cluster.local"


def dest(subset: str | None, weight: int | None, host: str = HOST) -> Obj:
    d: Obj = {"destination": {"host": host, **({"subset": subset} if subset else {})}}
    if weight is not None:
        d["weight"] = weight
    return d


def virtualservice(*routes: Obj) -> Obj:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "prod"},
            "spec": {"hosts": [HOST], "http": list(routes)}}


def istio_router(fake: FakeKube, **options: Any) -> istio.IstioRouter:
    config = istio.Config.model_validate(
        {"namespace": "prod", "virtualService": "reviews", "host": HOST,
         "stableSubset": "v1", "canarySubset": "v2", **options})
    return istio.from_config(config, api=api_for(fake.configuration()))


def test_istio_route_chosen_by_name_and_others_untouched(
    fake: FakeKube, routers: list[Any]
) -> None:
    fake.create(virtualservice(
        {"name": "testers", "match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "route": [dest("v2", 100), dest("v1", 0)]},
        {"name": "everyone", "route": [dest("v1", 100), dest("v2", 0)]},
    ))
    router = istio_router(fake, route="everyone")
    routers.append(router)
    router.set_weights(Weights(canary=25))
    http = fake.get("VirtualService", "prod", "reviews")["spec"]["http"]
    assert [d["weight"] for d in http[1]["route"]] == [75, 25]
    assert [d["weight"] for d in http[0]["route"]] == [100, 0]
    ambiguous = istio_router(fake)
    routers.append(ambiguous)
    with pytest.raises(RouterError, match="2 http routes with both .* choose one with route"):
        ambiguous.ensure()


def test_istio_two_hosts_instead_of_subsets(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(virtualservice({"route": [dest(None, 100, "reviews-primary"),
                                          dest(None, 0, "reviews-canary")]}))
    router = istio_router(fake, host="reviews-primary", canaryHost="reviews-canary",
                          stableSubset=None, canarySubset=None)
    routers.append(router)
    router.set_weights(Weights(canary=50))
    assert router.get_weights() == Weights(canary=50)


def test_istio_unweighted_destination_gets_nothing(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(virtualservice({"route": [dest("v1", 100), dest("v2", None)]}))
    router = istio_router(fake)
    routers.append(router)
    assert router.get_weights() == Weights(canary=0)


def test_istio_ensure_checks_the_destination_rule_subsets(
    fake: FakeKube, routers: list[Any]
) -> None:
    fake.create(virtualservice({"route": [dest("v1", 100), dest("v2", 0)]}))
    fake.create({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                 "metadata": {"name": "reviews", "namespace": "prod"},
                 "spec": {"host": HOST, "subsets": [{"name": "v1", "labels": {"v": "1"}}]}})
    router = istio_router(fake, destinationRule="reviews")
    routers.append(router)
    with pytest.raises(RouterError, match=r"DestinationRule prod/reviews defines no subset "
                                          r"'v2' \(it has: v1\)"):
        router.ensure()
    fake.modify("DestinationRule", "prod", "reviews",
                lambda o: o["spec"]["subsets"].append({"name": "v2", "labels": {"v": "2"}}))
    router.ensure()


def test_istio_missing_subset_in_route(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(virtualservice({"route": [dest("v1", 100), dest("v3", 0)]}))
    router = istio_router(fake, routeIndex=0)
    routers.append(router)
    with pytest.raises(RouterError, match=f"no entry for {HOST} subset v2"):
        router.get_weights()


# -- smi --------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v1alpha2", "v1alpha3", "v1alpha4"])
def test_smi_versions(fake: FakeKube, routers: list[Any], version: str) -> None:
    fake.create({"apiVersion": f"split.smi-spec.io/{version}", "kind": "TrafficSplit",
                 "metadata": {"name": "web", "namespace": "prod"},
                 "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": 100},
                                                         {"service": "web-v2", "weight": 0}]}})
    config = smi.Config.model_validate({"namespace": "prod", "trafficSplit": "web",
                                        "stableService": "web-v1", "canaryService": "web-v2",
                                        "version": version})
    router = smi.from_config(config, api=api_for(fake.configuration()))
    routers.append(router)
    router.set_weights(Weights(canary=5))
    assert router.get_weights() == Weights(canary=5)
    assert fake.requests[-1].path.startswith(f"/apis/split.smi-spec.io/{version}/")
