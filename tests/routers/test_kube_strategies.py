"""Matches, mirroring and affinity on the Kubernetes routers, through the real client.

The objects live in the fake API server (lab/fake_kube.py), which prunes fields
the installed CRD schema does not declare, as the real server does. Every object the
adapters write is validated against the upstream CRD schemas in tests/data/schemas/ (see
the README there for their source and version). No cluster runs here: whether Envoy,
Istio or a Gateway implementation routes as these objects say is not tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator

from canary.errors import InputError, RouterError
from canary.model import Weights
from canary.routers import gateway_api, istio
from canary.routers.features import Routes
from canary.routers.kube import api_for
from canary.routers.registry import build_router, require_feature
from canary.specs import RouterSpec
from lab.fake_kube import FakeKube

Obj = dict[str, Any]
SCHEMAS = Path(__file__).parents[1] / "data" / "schemas"
EXAMPLES = Path(__file__).parents[2] / "examples" / "kubernetes"
GW_EXPERIMENTAL = "gateway-api-v1.6.1-experimental-httproute-v1.json"
GW_STANDARD = "gateway-api-v1.6.1-standard-httproute-v1.json"
VS = "istio-1.30.3-virtualservice-v1beta1.json"
DR = "istio-1.30.3-destinationrule-v1beta1.json"
HOST = "reviews.prod.svc.cluster.local"


def schema(name: str) -> Obj:
    loaded: Obj = json.loads((SCHEMAS / name).read_text())
    return loaded


def assert_valid(obj: Obj, name: str) -> None:
    """``obj`` satisfies the upstream CRD schema (OpenAPI v3.0 ~ JSON Schema draft 4).

    The CEL rules (x-kubernetes-validations) are not evaluated here; the few that concern
    what canary writes are checked by hand in ``assert_cel_rules``.
    """
    errors = sorted(Draft4Validator(schema(name)).iter_errors(obj), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def assert_cel_rules(route: Obj) -> None:
    """The HTTPRoute CEL rules that canary's writes could break, restated."""
    rules = route["spec"]["rules"]
    names = [r["name"] for r in rules if "name" in r]
    assert len(names) == len(set(names)), "Rule name must be unique within the route"
    for rule in rules:
        for ref in rule.get("backendRefs", []):
            assert "port" in ref, "Must have port for Service reference"
        for f in rule.get("filters", []):
            mirror = f.get("requestMirror")
            assert (mirror is not None) == (f["type"] == "RequestMirror")
            if mirror is not None:
                assert not ("percent" in mirror and "fraction" in mirror)
                assert "port" in mirror["backendRef"]
        persistence = rule.get("sessionPersistence")
        if persistence and persistence.get("cookieConfig", {}).get("lifetimeType") == "Permanent":
            assert "absoluteTimeout" in persistence


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(schemas={"HTTPRoute": schema(GW_EXPERIMENTAL),
                           "VirtualService": schema(VS)}) as server:
        yield server


@pytest.fixture
def routers() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for router in made:
        router.close()


def test_the_schema_check_can_fail() -> None:
    bad = httproute({"matches": [{"headers": [{"type": "Regex", "name": "x", "value": "1"}]}],
                     "backendRefs": [backend("web-v1")],
                     "filters": [{"type": "RequestMirror", "requestMirror": {
                         "backendRef": {"name": "web-v2", "port": 80}, "percent": 150}}]})
    with pytest.raises(AssertionError, match="'Regex' is not one of") as info:
        assert_valid(bad, GW_EXPERIMENTAL)
    assert "150 is greater than the maximum of 100" in str(info.value)
    with pytest.raises(AssertionError, match="'fifty' is not of type 'object'"):
        assert_valid(virtualservice({"route": [dest("v1")], "mirrorPercentage": "fifty"}), VS)
    # The standard channel has no sessionPersistence: that is why the fake prunes it there.
    standard_rule = schema(GW_STANDARD)["properties"]["spec"]["properties"]["rules"]["items"]
    assert "sessionPersistence" not in standard_rule["properties"]


# -- gateway-api ------------------------------------------------------------------------

def backend(name: str, weight: int | None = None) -> Obj:
    out: Obj = {"name": name, "port": 80}
    if weight is not None:
        out["weight"] = weight
    return out


def httproute(*rules: Obj) -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": list(rules)}}


STATIC = {"name": "static", "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
          "backendRefs": [backend("assets")]}
WEIGHTED = {"name": "api",
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}},
                        {"path": {"type": "Exact", "value": "/"}, "method": "GET"}],
            "filters": [{"type": "RequestHeaderModifier",
                         "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}}],
            "timeouts": {"request": "10s"},
            "backendRefs": [backend("web-v1", 100), backend("web-v2", 0)]}


def gw_router(fake: FakeKube, routers: list[Any], **options: Any) -> gateway_api.GatewayAPIRouter:
    config = gateway_api.Config.model_validate(
        {"namespace": "prod", "httpRoute": "web", "stableService": "web-v1",
         "canaryService": "web-v2", **options})
    router = gateway_api.from_config(config, api=api_for(fake.configuration()))
    routers.append(router)
    return router


def rules_of(fake: FakeKube) -> list[Obj]:
    route = fake.get("HTTPRoute", "prod", "web")
    assert_valid(route, GW_EXPERIMENTAL)
    assert_cel_rules(route)
    rules: list[Obj] = route["spec"]["rules"]
    return rules


HEADER_EXACT = {"header": "X-Canary", "value": "always"}


def test_gateway_match_rule_sits_before_the_weighted_rule_and_goes(
        fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute(STATIC, WEIGHTED))
    before = fake.get("HTTPRoute", "prod", "web")["spec"]
    router = gw_router(fake, routers, match=HEADER_EXACT)
    assert router.get_routes() == Routes()

    router.set_routes(Routes(match=True))
    rules = rules_of(fake)
    assert [r["name"] for r in rules] == ["static", "canary-match", "api"]
    header = {"type": "Exact", "name": "X-Canary", "value": "always"}
    assert rules[1] == {
        "name": "canary-match",
        # each of the weighted rule's matches, narrowed by the header: more specific, so
        # it wins for exactly those requests
        "matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "headers": [header]},
                    {"path": {"type": "Exact", "value": "/"}, "method": "GET",
                     "headers": [header]}],
        "backendRefs": [{"name": "web-v2", "port": 80}],
        "filters": WEIGHTED["filters"], "timeouts": {"request": "10s"},
    }
    assert rules[2] == WEIGHTED
    assert router.get_routes() == Routes(match=True)
    router.set_weights(Weights(canary=10))  # the weighted rule is still found
    assert router.get_weights() == Weights(canary=10)

    router.set_routes(Routes(match=False))
    after = fake.get("HTTPRoute", "prod", "web")["spec"]
    assert after["rules"][0] == before["rules"][0]
    assert after["rules"][1] == {**WEIGHTED, "backendRefs": [backend("web-v1", 90),
                                                             backend("web-v2", 10)]}
    assert len(after["rules"]) == 2
    assert router.get_routes() == Routes()


def test_a_rule_index_ignores_canarys_own_rule(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute(STATIC, WEIGHTED))
    router = gw_router(fake, routers, rule=1, match=HEADER_EXACT)
    router.set_routes(Routes(match=True))
    router.set_weights(Weights(canary=30))
    rules = rules_of(fake)
    assert [r["name"] for r in rules] == ["static", "canary-match", "api"]
    assert [b.get("weight") for b in rules[2]["backendRefs"]] == [70, 30]


def test_a_legacy_match_block_still_chooses_the_rule() -> None:
    config = gateway_api.Config.model_validate(
        {"httpRoute": "web", "stableService": "a", "canaryService": "b",
         "match": {"path": {"value": "/api"}}})
    assert config.rule_match == {"path": {"value": "/api"}}
    assert config.match is None


@pytest.mark.parametrize("match, name, value, hits, misses", [
    ({"header": "X-Canary", "regex": "^beta-[0-9]+"}, "X-Canary", "^.*(?:^beta-[0-9]+).*$",
     ["beta-12", "beta-1x"], ["xbeta-1", "beta-"]),
    ({"cookie": "tester", "value": "yes"}, "Cookie", None,
     ["tester=yes", "a=1; tester=yes", "a=1;tester=yes; b=2"],
     ["tester=no", "xtester=yes", "tester=yess", "a=tester=yes"]),
    ({"cookie": "group", "regex": "^b(eta|lue)$"}, "Cookie", None,
     ["group=beta", "x=1; group=blue; y=2"], ["group=betas", "group=xbeta", "xgroup=beta"]),
    ({"cookie": "group", "regex": "eta"}, "Cookie", None,
     ["group=beta", "group=etaz; y=2"], ["group=bxta", "y=eta"]),
])
def test_gateway_regex_and_cookie_matches(fake: FakeKube, routers: list[Any], match: Obj,
                                          name: str, value: str | None, hits: list[str],
                                          misses: list[str]) -> None:
    fake.create(httproute(WEIGHTED))
    gw_router(fake, routers, match=match).set_routes(Routes(match=True))
    header = rules_of(fake)[0]["matches"][0]["headers"][0]
    assert (header["type"], header["name"]) == ("RegularExpression", name)
    if value is not None:
        assert header["value"] == value
    # Envoy matches the whole value; Python's fullmatch reads these patterns the same way.
    for text in hits:
        assert re.fullmatch(header["value"], text), text
    for text in misses:
        assert not re.fullmatch(header["value"], text), text


def test_gateway_mirror_filter_comes_and_goes(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute(WEIGHTED))
    router = gw_router(fake, routers, match=HEADER_EXACT)
    router.set_routes(Routes(mirror=25))
    rule = rules_of(fake)[0]
    assert rule["filters"] == [*WEIGHTED["filters"], {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "web-v2", "port": 80}, "percent": 25}}]
    assert router.get_routes() == Routes(mirror=25)

    router.set_routes(Routes(match=True, mirror=25))  # the mirror is not copied to the match
    rules = rules_of(fake)
    assert rules[0]["filters"] == WEIGHTED["filters"]
    assert router.get_routes() == Routes(match=True, mirror=25)

    fake.modify("HTTPRoute", "prod", "web", lambda r: r["spec"]["rules"][1]["filters"][-1][
        "requestMirror"].update(percent=None, fraction={"numerator": 1, "denominator": 1000}))
    fake.modify("HTTPRoute", "prod", "web", lambda r: r["spec"]["rules"][1]["filters"][-1][
        "requestMirror"].pop("percent"))
    assert router.get_routes() == Routes(match=True, mirror=1)  # a tenth of a percent is on

    router.set_routes(Routes())
    assert fake.get("HTTPRoute", "prod", "web")["spec"]["rules"] == [WEIGHTED]


def test_a_mirror_on_a_rule_without_filters_leaves_none_behind(
        fake: FakeKube, routers: list[Any]) -> None:
    plain = {"backendRefs": [backend("web-v1", 100), backend("web-v2", 0)]}
    fake.create(httproute(plain))
    router = gw_router(fake, routers)
    router.set_routes(Routes(mirror=100))
    assert len(rules_of(fake)[0]["filters"]) == 1
    router.set_routes(Routes())
    assert fake.get("HTTPRoute", "prod", "web")["spec"]["rules"] == [plain]


def test_gateway_routes_are_level_triggered(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute(STATIC, WEIGHTED))
    router = gw_router(fake, routers, match=HEADER_EXACT)
    router.set_routes(Routes(match=True, mirror=10))
    wanted = rules_of(fake)

    def vandalise(route: Obj) -> None:
        rules = route["spec"]["rules"]
        owned = rules.pop(1)
        owned["matches"].append({"path": {"type": "PathPrefix", "value": "/"}})  # everything
        rules.append(owned)  # and after the weighted rule
        rules[1]["filters"][-1]["requestMirror"]["percent"] = 80

    fake.modify("HTTPRoute", "prod", "web", vandalise)
    assert router.get_routes() == Routes(match=True, mirror=80)  # what is in effect
    router.set_routes(Routes(match=True, mirror=10))
    assert rules_of(fake) == wanted

    patches = sum(1 for r in fake.requests if r.method == "PATCH")
    router.set_routes(Routes(match=True, mirror=10))  # nothing to change: nothing written
    assert sum(1 for r in fake.requests if r.method == "PATCH") == patches

    fake.modify("HTTPRoute", "prod", "web",
                lambda route: route["spec"]["rules"][1]["backendRefs"][0].update(
                    {"kind": "Service", "group": "", "weight": 1}))  # server defaults
    router.set_routes(Routes(match=True, mirror=10))
    assert sum(1 for r in fake.requests if r.method == "PATCH") == patches


def test_a_match_needs_its_configuration(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute(WEIGHTED))
    with pytest.raises(RouterError, match="router block has no match"):
        gw_router(fake, routers).set_routes(Routes(match=True))
    clash = {**WEIGHTED, "matches": [{"headers": [{"name": "x-canary", "value": "1"}]}]}
    fake.modify("HTTPRoute", "prod", "web", lambda r: r["spec"].update(rules=[clash]))
    with pytest.raises(RouterError, match="already matches on header X-Canary"):
        gw_router(fake, routers, match=HEADER_EXACT).set_routes(Routes(match=True))


def test_gateway_session_persistence_is_written_with_the_weights(
        fake: FakeKube, routers: list[Any]) -> None:
    fake.create(httproute(STATIC, WEIGHTED))
    router = gw_router(fake, routers, sticky={"cookie": "canary_web", "lifetime": "90m"})
    router.set_weights(Weights(canary=5))
    rules = rules_of(fake)
    assert rules[1]["sessionPersistence"] == {
        "sessionName": "canary_web", "type": "Cookie", "absoluteTimeout": "1h30m",
        "cookieConfig": {"lifetimeType": "Permanent"}}
    assert "sessionPersistence" not in rules[0]
    fake.modify("HTTPRoute", "prod", "web",
                lambda r: r["spec"]["rules"][1].pop("sessionPersistence"))
    router.set_routes(Routes())  # repaired by any write, not only by a weight change
    assert "sessionPersistence" in rules_of(fake)[1]

    # Gateway API keeps a session on its backend even at weight 0: while a side is at 0%
    # there is no persistence, so a rollback (or a promotion) moves every client.
    for canary, sticky in ((0, False), (50, True), (100, False), (99, True)):
        router.set_weights(Weights(canary=canary))
        assert ("sessionPersistence" in rules_of(fake)[1]) is sticky, canary
    fake.modify("HTTPRoute", "prod", "web", lambda r: r["spec"]["rules"][1].update(
        backendRefs=[backend("web-v1", 1000), backend("web-v2", 0)]))
    router.set_routes(Routes())  # the weights as stored decide: canary has none
    assert "sessionPersistence" not in rules_of(fake)[1]
    fake.modify("HTTPRoute", "prod", "web", lambda r: r["spec"]["rules"][1].update(
        backendRefs=[backend("web-v1", 1000), backend("web-v2", 1)]))
    router.set_routes(Routes())  # 0.1% is still traffic
    assert "sessionPersistence" in rules_of(fake)[1]


def test_sticky_on_a_standard_channel_crd_is_an_error(routers: list[Any]) -> None:
    with FakeKube(schemas={"HTTPRoute": schema(GW_STANDARD)}) as standard:
        standard.create(httproute(WEIGHTED))
        router = gw_router(standard, routers, sticky={"cookie": "canary_web"})
        with pytest.raises(RouterError, match="dropped sessionPersistence.*experimental"):
            router.set_weights(Weights(canary=5))
        # the weights did go through; only the affinity is missing
        assert "sessionPersistence" not in standard.get("HTTPRoute", "prod", "web")[
            "spec"]["rules"][0]
        # percent on RequestMirror is standard since v1.2
        gw_router(standard, routers).set_routes(Routes(mirror=5))
        route = standard.get("HTTPRoute", "prod", "web")
        assert route["spec"]["rules"][0]["filters"][-1]["requestMirror"]["percent"] == 5
        assert_valid(route, GW_STANDARD)


def test_a_crd_without_rule_names_gets_no_stray_match_rule(routers: list[Any]) -> None:
    old = schema(GW_STANDARD)  # as before Gateway API v1.2: rules have no name
    del old["properties"]["spec"]["properties"]["rules"]["items"]["properties"]["name"]
    with FakeKube(schemas={"HTTPRoute": old}) as fake:
        fake.create(httproute({k: v for k, v in WEIGHTED.items() if k != "name"}))
        before = fake.get("HTTPRoute", "prod", "web")["spec"]
        router = gw_router(fake, routers, match=HEADER_EXACT)
        for _ in range(2):
            with pytest.raises(RouterError, match=r"dropped the name .* v1\.2\+ CRDs"):
                router.set_routes(Routes(match=True))
            assert fake.get("HTTPRoute", "prod", "web")["spec"] == before
        assert router.get_routes() == Routes()


# -- istio ------------------------------------------------------------------------------

def dest(subset: str, weight: int | None = None) -> Obj:
    out: Obj = {"destination": {"host": HOST, "subset": subset}}
    if weight is not None:
        out["weight"] = weight
    return out


TESTERS = {"name": "testers", "match": [{"headers": {"end-user": {"exact": "jason"}}}],
           "route": [dest("v1")]}
PRIMARY = {"name": "primary", "match": [{"uri": {"prefix": "/reviews"}}],
           "retries": {"attempts": 3}, "timeout": "5s",
           "route": [dest("v1", 100), dest("v2", 0)]}


def virtualservice(*routes: Obj) -> Obj:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "prod"},
            "spec": {"hosts": ["reviews"], "http": list(routes)}}


def istio_router(fake: FakeKube, routers: list[Any], **options: Any) -> istio.IstioRouter:
    config = istio.Config.model_validate(
        {"namespace": "prod", "virtualService": "reviews", "host": HOST,
         "stableSubset": "v1", "canarySubset": "v2", "route": "primary", **options})
    router = istio.from_config(config, api=api_for(fake.configuration()))
    routers.append(router)
    return router


def http_of(fake: FakeKube) -> list[Obj]:
    vs = fake.get("VirtualService", "prod", "reviews")
    assert_valid(vs, VS)
    routes: list[Obj] = vs["spec"]["http"]
    return routes


def test_istio_match_route_sits_before_the_weighted_route_and_goes(
        fake: FakeKube, routers: list[Any]) -> None:
    fake.create(virtualservice(TESTERS, PRIMARY))
    router = istio_router(fake, routers, match={"header": "X-Canary", "value": "always"})
    router.set_routes(Routes(match=True))
    routes = http_of(fake)
    assert [r["name"] for r in routes] == ["testers", "canary-match", "primary"]
    assert routes[1] == {
        "name": "canary-match",
        "match": [{"uri": {"prefix": "/reviews"},
                   "headers": {"x-canary": {"exact": "always"}}}],  # Istio: lower case
        "route": [{"destination": {"host": HOST, "subset": "v2"}}],
        "retries": {"attempts": 3}, "timeout": "5s",
    }
    assert router.get_routes() == Routes(match=True)
    router.set_weights(Weights(canary=20))
    router.set_routes(Routes())
    assert fake.get("VirtualService", "prod", "reviews")["spec"]["http"] == [
        TESTERS, {**PRIMARY, "route": [dest("v1", 80), dest("v2", 20)]}]


def test_istio_cookie_match_and_mirror(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(virtualservice(PRIMARY))
    router = istio_router(fake, routers, match={"cookie": "tester", "regex": "^(yes|1)$"})
    router.set_routes(Routes(match=True, mirror=30))
    routes = http_of(fake)
    cookie = routes[0]["match"][0]["headers"]["cookie"]["regex"]
    assert re.fullmatch(cookie, "a=b; tester=1")
    assert not re.fullmatch(cookie, "tester=10")
    assert routes[1]["mirror"] == {"host": HOST, "subset": "v2"}
    assert routes[1]["mirrorPercentage"] == {"value": 30.0}
    assert "mirror" not in routes[0]
    assert router.get_routes() == Routes(match=True, mirror=30)

    fake.modify("VirtualService", "prod", "reviews", lambda vs: vs["spec"]["http"].reverse())
    fake.modify("VirtualService", "prod", "reviews",
                lambda vs: vs["spec"]["http"][0]["mirrorPercentage"].update(value=75.0))
    assert router.get_routes() == Routes(match=True, mirror=75)
    fake.modify("VirtualService", "prod", "reviews",
                lambda vs: vs["spec"]["http"][0]["mirrorPercentage"].update(value=0.2))
    assert router.get_routes() == Routes(match=True, mirror=1)  # a fifth of a percent is on
    router.set_routes(Routes(match=True, mirror=30))
    assert http_of(fake) == routes  # repaired: order and percentage

    router.set_routes(Routes(mirror=0))
    assert fake.get("VirtualService", "prod", "reviews")["spec"]["http"] == [PRIMARY]


def test_istio_refuses_to_replace_a_foreign_mirror(fake: FakeKube, routers: list[Any]) -> None:
    fake.create(virtualservice({**PRIMARY, "mirror": {"host": "shadow"}}))
    router = istio_router(fake, routers)
    assert router.get_routes() == Routes()
    with pytest.raises(RouterError, match="already mirrors to shadow"):
        router.set_routes(Routes(mirror=10))
    router.set_routes(Routes())  # turning canary's mirror off never fails on the user's
    assert fake.get("VirtualService", "prod", "reviews")["spec"]["http"][0]["mirror"] == {
        "host": "shadow"}
    fake.modify("VirtualService", "prod", "reviews", lambda vs: vs["spec"]["http"][0].update(
        mirror=None, mirrors=[{"destination": {"host": "shadow"}}]))
    fake.modify("VirtualService", "prod", "reviews",
                lambda vs: vs["spec"]["http"][0].pop("mirror"))
    with pytest.raises(RouterError, match="mirrors with `mirrors`"):
        router.set_routes(Routes(mirror=10))


# -- what each router refuses -----------------------------------------------------------

def test_features_a_kubernetes_router_lacks_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"'istio' cannot do session affinity.*"
                                         r"routers that can: gateway-api, haproxy, nginx"):
        build_router(RouterSpec(type="istio", options={
            "virtualService": "reviews", "host": HOST, "stableSubset": "v1",
            "canarySubset": "v2", "sticky": {"cookie": "s"}}))
    with pytest.raises(InputError, match=r"'smi' cannot do header and cookie matches.*"
                                         r"gateway-api, haproxy, istio, nginx") as info:
        build_router(RouterSpec(type="smi", options={
            "trafficSplit": "web", "stableService": "a", "canaryService": "b",
            "match": {"header": "X-Canary", "value": "1"}}))
    assert info.value.field == "router.match"
    with pytest.raises(InputError, match=r"'smi' cannot do traffic mirroring.*gateway-api, "
                                         r"istio, nginx"):
        require_feature("smi", "mirror", field="stages[0].mirror")
    with pytest.raises(InputError, match="'smi' cannot do session affinity"):
        require_feature("smi", "sticky", field="router.sticky")
    require_feature("gateway-api", "sticky", field="router.sticky")
    require_feature("istio", "mirror", field="stages[0].mirror")


# -- the examples -----------------------------------------------------------------------

def uncommented(path: Path, keys: tuple[str, ...]) -> Obj:
    """The example rollout's router block with its commented ``keys`` lines switched on
    (the first line for each key)."""
    lines, seen = [], set()
    for line in path.read_text().splitlines():
        key = line.strip().removeprefix("# ").split(":")[0]
        if line.startswith("    # ") and key in keys and key not in seen:
            seen.add(key)
            line = line.replace("# ", "", 1)
        lines.append(line)
    assert seen == set(keys), f"{path} has no commented {set(keys) - seen}"
    router: Obj = yaml.safe_load("\n".join(lines))["spec"]["router"]
    return router


@pytest.mark.parametrize("folder, kind, schema_name, keys", [
    ("gateway-api", "HTTPRoute", GW_EXPERIMENTAL, ("match", "sticky")),
    ("istio", "VirtualService", VS, ("match",)),
])
def test_the_commented_examples_work_and_write_valid_objects(
        fake: FakeKube, routers: list[Any], tmp_path: Path, folder: str, kind: str,
        schema_name: str, keys: tuple[str, ...]) -> None:
    manifests = EXAMPLES / folder / "manifests.yaml"
    custom = [d for d in yaml.safe_load_all(manifests.read_text()) if d["kind"] != "Service"]
    for doc in custom:  # the example manifests themselves are valid upstream objects
        assert_valid(doc, {"HTTPRoute": GW_EXPERIMENTAL, "VirtualService": VS,
                           "DestinationRule": DR}[doc["kind"]])
    fake.load(manifests)
    block = uncommented(EXAMPLES / folder / "rollout.yaml", keys)
    block["kubeconfig"] = fake.write_kubeconfig(tmp_path / "kubeconfig")
    router = build_router(RouterSpec(type=block.pop("type"), options=block))
    assert isinstance(router, (gateway_api.GatewayAPIRouter, istio.IstioRouter))
    routers.append(router)
    router.ensure()
    router.set_weights(Weights(canary=5))
    router.set_routes(Routes(match=True, mirror=20))
    assert router.get_routes() == Routes(match=True, mirror=20)
    written = fake.get(kind, "shop", "checkout")
    assert_valid(written, schema_name)
    if kind == "HTTPRoute":
        assert_cel_rules(written)
        assert "sessionPersistence" in written["spec"]["rules"][1]
