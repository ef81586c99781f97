"""Router for the Kubernetes Gateway API: the backendRef weights of one HTTPRoute rule.

Any Gateway API implementation (Envoy Gateway, Istio, Cilium, NGINX Gateway Fabric, GKE,
...) splits a rule's traffic between its backendRefs in proportion to their weights, so
shifting a canary is rewriting two numbers in the HTTPRoute. canary writes stable=100-N
and canary=N; the route, its rules and both backendRefs are the user's and must exist.

The features beyond the split (features.py) are written into the same HTTPRoute:

* ``match``: a rule canary owns, named ``matchRuleName`` (default ``canary-match``),
  right before the weighted rule, with one backendRef: the canary Service. Its matches
  are the weighted rule's matches, each with the header added (``Exact``, or
  ``RegularExpression`` for a regex; see kube_rules.py). HTTPRoute has no cookie match,
  so a cookie is a ``RegularExpression`` match on the ``Cookie`` header. Gateway API
  ranks matches by specificity before rule order (same path, one header more wins), and
  list order breaks the remaining ties, so the owned rule wins for exactly the weighted
  rule's requests that carry the header. Regex matches are "implementation-specific"
  support in Gateway API: check that your implementation has them. The match off
  removes the owned rule; the user's rules are left as they were. ``rules[].name`` needs
  the v1.2+ CRDs: an older one prunes it, which canary detects and undoes.
* ``mirror``: a ``RequestMirror`` filter on the weighted rule sending ``percent`` of its
  requests to the canary Service (``percent`` needs Gateway API v1.2 or later), removed
  at 0.
* ``sticky``: ``sessionPersistence`` on the weighted rule (type Cookie, ``sessionName``
  the cookie, ``absoluteTimeout`` the lifetime, a Permanent cookie), written with every
  weight change while both sides carry traffic and removed while one is at 0%: Gateway
  API keeps a session on its backend even at weight 0, and a rollback must move canary
  cookie holders back to stable. It is an experimental-channel field: with the
  standard-channel CRD the API server drops it on write, which canary reads back and
  reports as a RouterError.

Nothing here has run against a real cluster (none can run where canary is tested): the
adapter is exercised through the real client against lab/fake_kube.py, and every
object it writes is validated against the upstream HTTPRoute CRD schema (tests/data/schemas).
"""

from __future__ import annotations

from typing import Any, Literal

from kubernetes.client import CustomObjectsApi
from pydantic import Field, model_validator

from canary.errors import RouterError
from canary.model import Weights
from canary.routers.features import Match, Routes, Sticky
from canary.routers.gateway_rules import (
    DEFAULT_MATCH,
    match_rule,
    mirror_ops,
    mirror_percent,
    mirror_target,
    persistence,
)
from canary.routers.kube import (
    KubeConnection,
    KubeObjects,
    ObjectRef,
    Patch,
)
from canary.routers.kube_rules import covers, owned_ops, user_indices
from canary.routers.kube_weights import WeightedObjectRouter, WeightedPair, find_pair

FEATURES = frozenset({"match", "sticky", "mirror"})

GROUP = "gateway.networking.k8s.io"
PLURAL = "httproutes"
DEFAULT_WEIGHT = 1  # the Gateway API default for a backendRef without a weight
_ROUTE_MATCH_KEYS = frozenset({"path", "headers", "queryParams", "method"})


class Config(KubeConnection):
    """The ``router`` block of a rollout with ``type: gateway-api``."""

    http_route: str = Field(min_length=1)
    stable_service: str = Field(min_length=1)
    canary_service: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # only backendRefs on this port
    # Which rule: by index (not counting canary's match rule), by name (rules[].name) or
    # by a match it contains, e.g. {path: {type: PathPrefix, value: /api}}. None of them:
    # the one rule naming both services.
    rule: int | None = Field(default=None, ge=0)
    rule_name: str | None = None
    rule_match: dict[str, Any] | None = None
    version: Literal["v1", "v1beta1"] = "v1"
    match: Match | None = None
    match_rule_name: str = Field(default="canary-match", min_length=1, max_length=253,
                                 pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    sticky: Sticky | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_match(cls, data: Any) -> Any:
        # Before matches existed, `match` chose the rule by an HTTPRouteMatch; such a block
        # (path, headers, queryParams, method) still means ruleMatch.
        if isinstance(data, dict) and isinstance(data.get("match"), dict) and \
                data["match"] and set(data["match"]) <= _ROUTE_MATCH_KEYS \
                and "ruleMatch" not in data and "rule_match" not in data:
            data = {**data, "ruleMatch": data["match"]}
            del data["match"]
        return data

    @model_validator(mode="after")
    def _one_selector(self) -> Config:
        chosen = [n for n, v in (("rule", self.rule), ("ruleName", self.rule_name),
                                 ("ruleMatch", self.rule_match)) if v is not None]
        if len(chosen) > 1:
            raise ValueError(f"choose the rule one way, not with {' and '.join(chosen)}")
        if self.stable_service == self.canary_service:
            raise ValueError("stableService and canaryService must be different Services")
        if self.rule_name is not None and self.rule_name == self.match_rule_name:
            raise ValueError(f"ruleName {self.rule_name!r} is the name of canary's own match "
                             "rule; set matchRuleName to another name")
        return self


class GatewayAPIRouter(WeightedObjectRouter):
    """Moves traffic between two Services referenced by one HTTPRoute rule."""

    def __init__(self, config: Config, *, api: CustomObjectsApi | None = None) -> None:
        ref = ObjectRef(GROUP, config.version, PLURAL, "HTTPRoute",
                        config.namespace, config.http_route)
        super().__init__(ref, KubeObjects(config, api=api))
        self.config = config

    def describe(self) -> str:
        c = self.config
        return (f"gateway-api HTTPRoute {c.namespace}/{c.http_route} "
                f"({c.stable_service} -> {c.canary_service})")

    def locate(self, obj: dict[str, Any]) -> WeightedPair:
        rules = _rules(obj, self.ref)
        index = self._rule_index(rules)
        return find_pair(
            rules[index].get("backendRefs"),
            pointer=f"/spec/rules/{index}/backendRefs", where=f"{self.ref} rule {index}",
            default=DEFAULT_WEIGHT,
            is_stable=lambda ref: self._is_service(ref, self.config.stable_service),
            is_canary=lambda ref: self._is_service(ref, self.config.canary_service),
            label=_label, stable_name=f"Service {self.config.stable_service}",
            canary_name=f"Service {self.config.canary_service}",
        )

    def _rule_index(self, rules: list[Any]) -> int:
        c = self.config
        mine = user_indices(rules, c.match_rule_name)  # canary's match rule is never chosen
        if c.rule is not None:
            if c.rule >= len(mine):
                raise RouterError(f"{self.ref} has {len(mine)} rules; rule {c.rule} does "
                                  "not exist (rules are counted from 0, without canary's "
                                  "match rule)")
            return mine[c.rule]
        if c.rule_name is not None:
            hits = [i for i in mine if rules[i].get("name") == c.rule_name]
            what = f"named {c.rule_name!r}"
        elif c.rule_match is not None:
            hits = [i for i in mine if any(_contains(m, c.rule_match)
                                           for m in rules[i].get("matches") or DEFAULT_MATCH)]
            what = f"with a match containing {c.rule_match}"
        else:
            hits = [i for i in mine
                    if any(self._is_service(b, c.stable_service) for b in _refs(rules[i]))
                    and any(self._is_service(b, c.canary_service) for b in _refs(rules[i]))]
            what = f"referencing both {c.stable_service} and {c.canary_service}"
        if len(hits) != 1:
            count = "no rule" if not hits else f"{len(hits)} rules"
            raise RouterError(f"{self.ref}: {count} {what}; choose one with rule (an index), "
                              "ruleName or ruleMatch in the router block")
        return hits[0]

    # -- weights, with the affinity written alongside ----------------------------------
    def set_weights(self, weights: Weights) -> None:
        def plan(obj: dict[str, Any]) -> Patch:
            return [*self.locate(obj).ops(weights), *self._sticky_ops(obj, weights)]
        self._check_sticky(self._objects.update(self.ref, plan), weights)

    def _sticky_ops(self, obj: dict[str, Any], weights: Weights | None = None) -> Patch:
        """Session persistence on the weighted rule while both sides carry traffic.

        Gateway API keeps a session on its backend "even if the weight is set to 0"
        (GEP-1619), so a rollback would leave canary cookie holders on the canary; the
        field is removed while a side is at 0%, and every client follows the weights.
        """
        sticky = self.config.sticky
        if sticky is None:
            return []
        rules = _rules(obj, self.ref)
        index = self._rule_index(rules)
        pointer = f"/spec/rules/{index}/sessionPersistence"
        current = rules[index].get("sessionPersistence")
        if not self._both_sides(obj, weights):
            return [] if current is None else [{"op": "remove", "path": pointer}]
        want = persistence(sticky)
        return [] if covers(current, want) else [{"op": "add", "path": pointer, "value": want}]

    def _both_sides(self, obj: dict[str, Any], weights: Weights | None) -> bool:
        """Whether stable and canary both get traffic (after ``weights``, or as stored)."""
        if weights is not None:
            return 0 < weights.canary < 100
        pair = self.locate(obj)
        return all((pair.default if raw is None else raw) > 0
                   for raw in (pair.stable_raw, pair.canary_raw))

    def _check_sticky(self, stored: dict[str, Any], weights: Weights | None = None) -> None:
        if self.config.sticky is None or not self._both_sides(stored, weights):
            return
        rules = _rules(stored, self.ref)
        if rules[self._rule_index(rules)].get("sessionPersistence") is None:
            raise RouterError(
                f"{self.ref}: the API server dropped sessionPersistence from the rule: the "
                "HTTPRoute CRD in the cluster is the standard channel, and session "
                "persistence is an experimental-channel field; install the experimental "
                "Gateway API CRDs or remove sticky from the router block")

    # -- matches and mirroring (RoutingRules) ------------------------------------------
    def set_routes(self, routes: Routes) -> None:
        if routes.match and self.config.match is None:
            raise RouterError(f"{self.describe()}: asked to turn the match on, but the "
                              "router block has no match")
        stored = self._objects.update(self.ref, lambda obj: self._routes_ops(obj, routes))
        if routes.match and not self.get_routes_of(stored).match:
            self._undo_unnamed_rule()
        self._check_sticky(stored)

    def _undo_unnamed_rule(self) -> None:
        """Remove the match rule a pre-v1.2 CRD stored without its name, then fail.

        HTTPRoute ``rules[].name`` exists since Gateway API v1.2; an older CRD prunes it,
        and a rule canary cannot name again would be added once more on every write.
        """
        def plan(obj: dict[str, Any]) -> Patch:
            rules = _rules(obj, self.ref)
            index = self._rule_index(rules)
            c = self.config
            assert c.match is not None
            want = match_rule(rules[index], name=c.match_rule_name, match=c.match,
                              canary=self._canary_ref(rules[index], index),
                              is_own_mirror=self._own_mirror, where=str(self.ref))
            del want["name"]
            if index > 0 and "name" not in rules[index - 1] and covers(rules[index - 1], want):
                return [{"op": "remove", "path": f"/spec/rules/{index - 1}"}]
            return []
        self._objects.update(self.ref, plan)
        raise RouterError(f"{self.ref}: the API server dropped the name of canary's match "
                          "rule (HTTPRoute rules[].name needs the Gateway API v1.2+ CRDs), so "
                          "canary could not find it again; the rule was removed. Upgrade the "
                          "CRDs to use match")

    def get_routes(self) -> Routes:
        return self.get_routes_of(self._objects.get(self.ref))

    def get_routes_of(self, obj: dict[str, Any]) -> Routes:
        """The routes in effect in ``obj``, an HTTPRoute as read from the cluster."""
        rules = _rules(obj, self.ref)
        index = self._rule_index(rules)
        # Any rule under canary's name still sends requests to the canary, whatever its
        # content, so the match counts as on until the last one is gone.
        match = len(user_indices(rules, self.config.match_rule_name)) < len(rules)
        percents = [mirror_percent(f) for f in rules[index].get("filters") or []
                    if self._own_mirror(f)]
        return Routes(match=match, mirror=max(percents, default=0))

    def _routes_ops(self, obj: dict[str, Any], routes: Routes) -> Patch:
        rules = _rules(obj, self.ref)
        index = self._rule_index(rules)
        weighted = rules[index]
        canary = self._canary_ref(weighted, index)
        c = self.config
        ops = [*mirror_ops(weighted, pointer=f"/spec/rules/{index}/filters", canary=canary,
                           percent=routes.mirror, is_own_mirror=self._own_mirror),
               *self._sticky_ops(obj)]
        want = None
        if routes.match:
            assert c.match is not None  # set_routes checked
            want = match_rule(weighted, name=c.match_rule_name, match=c.match, canary=canary,
                              is_own_mirror=self._own_mirror, where=str(self.ref))
        return ops + owned_ops(rules, pointer="/spec/rules", name=self.config.match_rule_name,
                               before=index, want=want)

    def _canary_ref(self, rule: dict[str, Any], index: int) -> dict[str, Any]:
        refs = [r for r in _refs(rule) if self._is_service(r, self.config.canary_service)]
        if not refs:
            raise RouterError(f"{self.ref} rule {index}: no backendRef for Service "
                              f"{self.config.canary_service}")
        return {k: v for k, v in refs[0].items() if k in ("group", "kind", "name",
                                                          "namespace", "port")}

    def _own_mirror(self, f: dict[str, Any]) -> bool:
        return bool(mirror_target(f)) and self._is_service(mirror_target(f),
                                                           self.config.canary_service)

    def _is_service(self, ref: dict[str, Any], service: str) -> bool:
        return (
            ref.get("name") == service
            and ref.get("kind", "Service") == "Service"
            and ref.get("group", "") == ""
            and ref.get("namespace", self.config.namespace) == self.config.namespace
            and (self.config.port is None or ref.get("port") == self.config.port)
        )


def _rules(obj: dict[str, Any], ref: ObjectRef) -> list[Any]:
    rules = (obj.get("spec") or {}).get("rules")
    if not isinstance(rules, list) or not rules:
        raise RouterError(f"{ref} has no rules")
    return rules


def _refs(rule: dict[str, Any]) -> list[dict[str, Any]]:
    refs = rule.get("backendRefs")
    return [r for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []


def _label(ref: dict[str, Any]) -> str:
    port = f":{ref['port']}" if "port" in ref else ""
    return f"{ref.get('kind', 'Service')} {ref.get('name')}{port}"


def _contains(actual: Any, wanted: Any) -> bool:
    """Whether ``wanted`` is a part of ``actual``: dict keys and list items may be extra."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and all(
            any(_contains(a, w) for a in actual) for w in wanted)
    return bool(actual == wanted)


def from_config(config: Config, *, api: CustomObjectsApi | None = None) -> GatewayAPIRouter:
    return GatewayAPIRouter(config, api=api)
