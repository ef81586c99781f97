"""Router for Istio: the weights of two destinations in one VirtualService HTTP route.

The usual Istio canary keeps one Service and tells the versions apart with DestinationRule
subsets (``stable``, ``canary``); some setups use two hosts instead. Either way the split
is the ``weight`` of two destinations in one ``http`` route, which canary rewrites to
stable=100-N and canary=N. The VirtualService, the route and both destinations must exist.

Beyond the split (features.py), in the same VirtualService:

* ``match``: an http route canary owns, named ``matchRoute`` (default ``canary-match``),
  right before the weighted route (Istio takes the first route that matches, so it goes
  before the weighted one, not necessarily first in the list: routes the user placed
  earlier keep their precedence). Its ``match`` is the weighted route's conditions with the
  header added (``exact``, or ``regex``; see kube_rules.py), and its one destination is
  the canary. A cookie is a ``regex`` on the ``cookie`` header, Istio having no cookie
  match. The weighted route's other fields (rewrite, timeout, retries, headers) are copied
  so matched requests are treated alike. Turning the match off removes that route only.
* ``mirror``: ``mirror`` (the canary destination) and ``mirrorPercentage`` on the weighted
  route, both removed at 0. A ``mirror`` to anything else is the user's and is refused.
* ``sticky`` is not supported, on purpose. Istio's affinity is ``consistentHash`` in a
  DestinationRule, but Envoy picks the subset by weight for each request first and only
  then hashes inside the chosen subset: the cookie keeps a client on one pod of a version,
  never on the version, so it would claim an affinity it does not give. (Version affinity
  would need a ``Set-Cookie`` per destination plus a cookie route per side, kept in step
  with the weights; not done.) Asking for it is an input error naming istio and sticky.

Nothing here has run against a real cluster (none can run where canary is tested): it is
exercised through the real client against lab/fake_kube.py, and every object it
writes is validated against the upstream VirtualService CRD schema (tests/data/schemas).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

from kubernetes.client import CustomObjectsApi
from pydantic import Field, model_validator

from canary.errors import RouterError
from canary.routers.features import Match, Routes
from canary.routers.kube import (
    KubeConnection,
    KubeObjects,
    ObjectRef,
    Patch,
)
from canary.routers.kube_rules import cookie_regex, covers, header_regex, owned_ops, user_indices
from canary.routers.kube_weights import WeightedObjectRouter, WeightedPair, find_pair

FEATURES = frozenset({"match", "mirror"})

GROUP = "networking.istio.io"
_MIRROR_KEYS = ("mirror", "mirrorPercentage", "mirrorPercent", "mirror_percent", "mirrors")


class Config(KubeConnection):
    """The ``router`` block of a rollout with ``type: istio``."""

    virtual_service: str = Field(min_length=1)
    host: str = Field(min_length=1)  # destination.host, exactly as written in the route
    stable_subset: str | None = None
    canary_subset: str | None = None
    canary_host: str | None = None  # when the versions are two hosts rather than subsets
    port: int | None = Field(default=None, ge=1, le=65535)  # only destinations on this port
    # Which http route: by name or index. Neither: the one route holding both destinations.
    route: str | None = None
    route_index: int | None = Field(default=None, ge=0)
    # When set, ensure() also checks that this DestinationRule defines both subsets.
    destination_rule: str | None = None
    # v1beta1 is served by Istio 1.5 and later; v1 only from 1.22.
    version: Literal["v1", "v1beta1", "v1alpha3"] = "v1beta1"
    match: Match | None = None
    match_route: str = Field(default="canary-match", min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> Config:
        if self.route is not None and self.route_index is not None:
            raise ValueError("choose the route by route (name) or routeIndex, not both")
        if self.route is not None and self.route == self.match_route:
            raise ValueError(f"route {self.route!r} is the name of canary's own match route; "
                             "set matchRoute to another name")
        if self.stable == self.canary:
            raise ValueError("stable and canary are the same destination: set stableSubset "
                             "and canarySubset, or canaryHost")
        return self

    @property
    def stable(self) -> tuple[str, str | None]:
        return (self.host, self.stable_subset)

    @property
    def canary(self) -> tuple[str, str | None]:
        return (self.canary_host or self.host, self.canary_subset)


def _name(destination: tuple[str, str | None]) -> str:
    host, subset = destination
    return f"{host} subset {subset}" if subset else host


class IstioRouter(WeightedObjectRouter):
    """Moves traffic between two destinations of one VirtualService HTTP route."""

    def __init__(self, config: Config, *, api: CustomObjectsApi | None = None) -> None:
        ref = ObjectRef(GROUP, config.version, "virtualservices", "VirtualService",
                        config.namespace, config.virtual_service)
        super().__init__(ref, KubeObjects(config, api=api))
        self.config = config

    def describe(self) -> str:
        c = self.config
        return (f"istio VirtualService {c.namespace}/{c.virtual_service} "
                f"({_name(c.stable)} -> {_name(c.canary)})")

    def ensure(self) -> None:
        super().ensure()
        c = self.config
        if c.destination_rule is None:
            return
        rule = ObjectRef(GROUP, c.version, "destinationrules", "DestinationRule",
                         c.namespace, c.destination_rule)
        subsets = (self._objects.get(rule).get("spec") or {}).get("subsets") or []
        defined = {s.get("name") for s in subsets if isinstance(s, dict)}
        for subset in (c.stable_subset, c.canary_subset):
            if subset is not None and subset not in defined:
                raise RouterError(f"{rule} defines no subset {subset!r} (it has: "
                                  f"{', '.join(sorted(map(str, defined))) or 'none'})")

    def locate(self, obj: dict[str, Any]) -> WeightedPair:
        routes = _routes(obj, self.ref)
        index = self._route_index(routes)
        label = routes[index].get("name") or index
        return find_pair(
            routes[index].get("route"),
            pointer=f"/spec/http/{index}/route", where=f"{self.ref} http route {label}",
            default=0,  # Istio: an unweighted destination beside weighted ones gets nothing
            is_stable=lambda d: self._is(d, self.config.stable),
            is_canary=lambda d: self._is(d, self.config.canary),
            label=_label, stable_name=_name(self.config.stable),
            canary_name=_name(self.config.canary),
        )

    def _route_index(self, routes: list[Any]) -> int:
        c = self.config
        mine = user_indices(routes, c.match_route)  # canary's match route is never chosen
        if c.route_index is not None:
            if c.route_index >= len(mine):
                raise RouterError(f"{self.ref} has {len(mine)} http routes; routeIndex "
                                  f"{c.route_index} does not exist (counted from 0, without "
                                  "canary's match route)")
            return mine[c.route_index]
        if c.route is not None:
            hits = [i for i in mine if routes[i].get("name") == c.route]
            what = f"named {c.route!r}"
        else:
            hits = [i for i in mine
                    if any(self._is(d, c.stable) for d in _destinations(routes[i]))
                    and any(self._is(d, c.canary) for d in _destinations(routes[i]))]
            what = f"with both {_name(c.stable)} and {_name(c.canary)}"
        if len(hits) != 1:
            count = "no http route" if not hits else f"{len(hits)} http routes"
            raise RouterError(f"{self.ref}: {count} {what}; choose one with route (its "
                              "name) or routeIndex in the router block")
        return hits[0]

    # -- matches and mirroring (RoutingRules) ------------------------------------------
    def set_routes(self, routes: Routes) -> None:
        if routes.match and self.config.match is None:
            raise RouterError(f"{self.describe()}: asked to turn the match on, but the "
                              "router block has no match")
        self._objects.update(self.ref, lambda obj: self._routes_ops(obj, routes))

    def get_routes(self) -> Routes:
        routes = _routes(self._objects.get(self.ref), self.ref)
        weighted = routes[self._route_index(routes)]
        # Any route under canary's name still sends requests to the canary, whatever its
        # content, so the match counts as on until the last one is gone.
        match = len(user_indices(routes, self.config.match_route)) < len(routes)
        return Routes(match=match, mirror=self._mirror_percent(weighted))

    def _routes_ops(self, obj: dict[str, Any], routes: Routes) -> Patch:
        http = _routes(obj, self.ref)
        index = self._route_index(http)
        weighted = http[index]
        canary = self._canary_destination(weighted, index)
        ops = self._mirror_ops(weighted, index, canary, routes.mirror)
        want = self._match_route(weighted, canary) if routes.match else None
        return ops + owned_ops(http, pointer="/spec/http", name=self.config.match_route,
                               before=index, want=want)

    def _canary_destination(self, route: dict[str, Any], index: int) -> dict[str, Any]:
        for entry in _destinations(route):
            if self._is(entry, self.config.canary):
                return copy.deepcopy(entry["destination"])
        raise RouterError(f"{self.ref} http route {index}: no destination "
                          f"{_name(self.config.canary)}")

    def _match_route(self, weighted: dict[str, Any],
                     canary: dict[str, Any]) -> dict[str, Any]:
        match = self.config.match
        assert match is not None
        if match.header is not None:
            name = match.header.lower()  # Istio takes header names in lower case only
            condition = ({"exact": match.value} if match.value is not None
                         else {"regex": header_regex(str(match.regex))})
        else:
            name, condition = "cookie", {"regex": cookie_regex(match)}
        conditions = []
        for m in weighted.get("match") or [{}]:
            headers = dict(m.get("headers") or {})
            if name in {str(h).lower() for h in headers}:
                raise RouterError(f"{self.ref}: the weighted route already matches on header "
                                  f"{name}; canary cannot add its match on the same header")
            conditions.append({**copy.deepcopy(m), "headers": {**headers, name: condition}})
        route: dict[str, Any] = {"name": self.config.match_route, "match": conditions,
                                 "route": [{"destination": canary}]}
        for key, value in weighted.items():
            if key not in ("name", "match", "route", *_MIRROR_KEYS):
                route[key] = copy.deepcopy(value)
        return route

    def _mirror_percent(self, route: dict[str, Any]) -> int:
        mirror = route.get("mirror")
        if not isinstance(mirror, dict) or not self._is({"destination": mirror},
                                                        self.config.canary):
            return 0
        share = route.get("mirrorPercentage")
        if isinstance(share, dict) and isinstance(share.get("value"), (int, float)):
            return min(100, math.ceil(float(share["value"])))  # 0.5% mirrored is not 0
        legacy = route.get("mirrorPercent")  # deprecated integer form
        return legacy if isinstance(legacy, int) else 100  # no percentage: everything

    def _mirror_ops(self, route: dict[str, Any], index: int, canary: dict[str, Any],
                    percent: int) -> Patch:
        pointer = f"/spec/http/{index}"
        mirror = route.get("mirror")
        ours = isinstance(mirror, dict) and self._is({"destination": mirror}, self.config.canary)
        if percent == 0:  # a mirror that is not canary's stays, and is no reason to fail
            keys = ("mirror", "mirrorPercentage", "mirrorPercent") if ours else ()
            return [{"op": "remove", "path": f"{pointer}/{k}"} for k in keys if k in route]
        if mirror is not None and not ours:
            raise RouterError(f"{self.ref} http route {index} already mirrors to "
                              f"{_label({'destination': mirror})}; canary will not replace "
                              "a mirror it does not own")
        if route.get("mirrors"):
            raise RouterError(f"{self.ref} http route {index} mirrors with `mirrors`; canary "
                              "writes `mirror` and will not set both")
        want = {"mirror": canary, "mirrorPercentage": {"value": float(percent)}}
        ops: Patch = [{"op": "add", "path": f"{pointer}/{k}", "value": v}
                      for k, v in want.items() if not covers(route.get(k), v)]
        if "mirrorPercent" in route:
            ops.append({"op": "remove", "path": f"{pointer}/mirrorPercent"})
        return ops

    def _is(self, entry: dict[str, Any], destination: tuple[str, str | None]) -> bool:
        d = entry.get("destination") or {}
        port = (d.get("port") or {}).get("number")
        return ((d.get("host"), d.get("subset")) == destination
                and (self.config.port is None or port == self.config.port))


def _routes(obj: dict[str, Any], ref: ObjectRef) -> list[Any]:
    routes = (obj.get("spec") or {}).get("http")
    if not isinstance(routes, list) or not routes:
        raise RouterError(f"{ref} has no http routes")
    return routes


def _destinations(route: dict[str, Any]) -> list[dict[str, Any]]:
    entries = route.get("route")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _label(entry: dict[str, Any]) -> str:
    d = entry.get("destination") or {}
    return _name((str(d.get("host")), d.get("subset")))


def from_config(config: Config, *, api: CustomObjectsApi | None = None) -> IstioRouter:
    return IstioRouter(config, api=api)
