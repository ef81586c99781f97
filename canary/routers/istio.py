"""Router for Istio: the weights of two destinations in one VirtualService HTTP route.

The usual Istio canary keeps one Service and tells the versions apart with DestinationRule
subsets (``stable``, ``canary``); some setups use two hosts instead. Either way the split
is the ``weight`` of two destinations in one ``http`` route, which canary rewrites to
stable=100-N and canary=N. The VirtualService, the route and both destinations must exist.
"""

from __future__ import annotations

from typing import Any, Literal

from kubernetes.client import CustomObjectsApi
from pydantic import Field, model_validator

from canary.errors import RouterError
from canary.routers.kube import (
    KubeConnection,
    KubeObjects,
    ObjectRef,
    WeightedObjectRouter,
    WeightedPair,
    find_pair,
)

GROUP = "networking.istio.io"


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

    @model_validator(mode="after")
    def _coherent(self) -> Config:
        if self.route is not None and self.route_index is not None:
            raise ValueError("choose the route by route (name) or routeIndex, not both")
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
        routes = (obj.get("spec") or {}).get("http")
        if not isinstance(routes, list) or not routes:
            raise RouterError(f"{self.ref} has no http routes")
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
        if c.route_index is not None:
            if c.route_index >= len(routes):
                raise RouterError(f"{self.ref} has {len(routes)} http routes; routeIndex "
                                  f"{c.route_index} does not exist (counted from 0)")
            return c.route_index
        if c.route is not None:
            hits = [i for i, r in enumerate(routes) if r.get("name") == c.route]
            what = f"named {c.route!r}"
        else:
            hits = [i for i, r in enumerate(routes)
                    if any(self._is(d, c.stable) for d in _destinations(r))
                    and any(self._is(d, c.canary) for d in _destinations(r))]
            what = f"with both {_name(c.stable)} and {_name(c.canary)}"
        if len(hits) != 1:
            count = "no http route" if not hits else f"{len(hits)} http routes"
            raise RouterError(f"{self.ref}: {count} {what}; choose one with route (its "
                              "name) or routeIndex in the router block")
        return hits[0]

    def _is(self, entry: dict[str, Any], destination: tuple[str, str | None]) -> bool:
        d = entry.get("destination") or {}
        port = (d.get("port") or {}).get("number")
        return ((d.get("host"), d.get("subset")) == destination
                and (self.config.port is None or port == self.config.port))


def _destinations(route: dict[str, Any]) -> list[dict[str, Any]]:
    entries = route.get("route")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _label(entry: dict[str, Any]) -> str:
    d = entry.get("destination") or {}
    return _name((str(d.get("host")), d.get("subset")))


def from_config(config: Config, *, api: CustomObjectsApi | None = None) -> IstioRouter:
    return IstioRouter(config, api=api)
