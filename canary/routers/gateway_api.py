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

from typing import Any

from kubernetes.client import CustomObjectsApi

from canary.errors import RouterError
from canary.model import Weights
from canary.routers.features import Routes
from canary.routers.gateway_route import Config, is_service, label, refs_of, rule_index, rules_of
from canary.routers.gateway_rules import (
    match_rule,
    mirror_ops,
    mirror_percent,
    mirror_target,
    persistence,
)
from canary.routers.kube import (
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
        rules = rules_of(obj, self.ref)
        index = rule_index(rules, self.config, ref=self.ref)
        return find_pair(
            rules[index].get("backendRefs"),
            pointer=f"/spec/rules/{index}/backendRefs", where=f"{self.ref} rule {index}",
            default=DEFAULT_WEIGHT,
            is_stable=lambda ref: is_service(ref, self.config.stable_service, self.config),
            is_canary=lambda ref: is_service(ref, self.config.canary_service, self.config),
            label=label, stable_name=f"Service {self.config.stable_service}",
            canary_name=f"Service {self.config.canary_service}",
        )

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
        rules = rules_of(obj, self.ref)
        index = rule_index(rules, self.config, ref=self.ref)
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
        rules = rules_of(stored, self.ref)
        if rules[rule_index(rules, self.config, ref=self.ref)].get("sessionPersistence") is None:
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
            rules = rules_of(obj, self.ref)
            index = rule_index(rules, self.config, ref=self.ref)
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
        rules = rules_of(obj, self.ref)
        index = rule_index(rules, self.config, ref=self.ref)
        # Any rule under canary's name still sends requests to the canary, whatever its
        # content, so the match counts as on until the last one is gone.
        match = len(user_indices(rules, self.config.match_rule_name)) < len(rules)
        percents = [mirror_percent(f) for f in rules[index].get("filters") or []
                    if self._own_mirror(f)]
        return Routes(match=match, mirror=max(percents, default=0))

    def _routes_ops(self, obj: dict[str, Any], routes: Routes) -> Patch:
        rules = rules_of(obj, self.ref)
        index = rule_index(rules, self.config, ref=self.ref)
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
        refs = [r for r in refs_of(rule) if is_service(r, self.config.canary_service, self.config)]
        if not refs:
            raise RouterError(f"{self.ref} rule {index}: no backendRef for Service "
                              f"{self.config.canary_service}")
        return {k: v for k, v in refs[0].items() if k in ("group", "kind", "name",
                                                          "namespace", "port")}

    def _own_mirror(self, f: dict[str, Any]) -> bool:
        target = mirror_target(f)
        return bool(target) and is_service(target, self.config.canary_service, self.config)


def from_config(config: Config, *, api: CustomObjectsApi | None = None) -> GatewayAPIRouter:
    return GatewayAPIRouter(config, api=api)
