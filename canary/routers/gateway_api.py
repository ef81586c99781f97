"""Router for the Kubernetes Gateway API: the backendRef weights of one HTTPRoute rule.

Any Gateway API implementation (Envoy Gateway, Istio, Cilium, NGINX Gateway Fabric, GKE,
...) splits a rule's traffic between its backendRefs in proportion to their weights, so
shifting a canary is rewriting two numbers in the HTTPRoute. canary writes stable=100-N
and canary=N; the route, its rules and both backendRefs are the user's and must exist.
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

GROUP = "gateway.networking.k8s.io"
PLURAL = "httproutes"
DEFAULT_WEIGHT = 1  # the Gateway API default for a backendRef without a weight
DEFAULT_MATCH = [{"path": {"type": "PathPrefix", "value": "/"}}]  # a rule without matches


class Config(KubeConnection):
    """The ``router`` block of a rollout with ``type: gateway-api``."""

    http_route: str = Field(min_length=1)
    stable_service: str = Field(min_length=1)
    canary_service: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # only backendRefs on this port
    # Which rule: by index, by name (rules[].name) or by a match it contains, e.g.
    # {path: {type: PathPrefix, value: /api}}. None of them: the one rule naming both
    # services.
    rule: int | None = Field(default=None, ge=0)
    rule_name: str | None = None
    match: dict[str, Any] | None = None
    version: Literal["v1", "v1beta1"] = "v1"

    @model_validator(mode="after")
    def _one_selector(self) -> Config:
        chosen = [n for n, v in (("rule", self.rule), ("ruleName", self.rule_name),
                                 ("match", self.match)) if v is not None]
        if len(chosen) > 1:
            raise ValueError(f"choose the rule one way, not with {' and '.join(chosen)}")
        if self.stable_service == self.canary_service:
            raise ValueError("stableService and canaryService must be different Services")
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
        rules = (obj.get("spec") or {}).get("rules")
        if not isinstance(rules, list) or not rules:
            raise RouterError(f"{self.ref} has no rules")
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
        if c.rule is not None:
            if c.rule >= len(rules):
                raise RouterError(f"{self.ref} has {len(rules)} rules; rule {c.rule} does "
                                  "not exist (rules are counted from 0)")
            return c.rule
        if c.rule_name is not None:
            hits = [i for i, r in enumerate(rules) if r.get("name") == c.rule_name]
            what = f"named {c.rule_name!r}"
        elif c.match is not None:
            hits = [i for i, r in enumerate(rules)
                    if any(_contains(m, c.match) for m in r.get("matches") or DEFAULT_MATCH)]
            what = f"with a match containing {c.match}"
        else:
            hits = [i for i, r in enumerate(rules)
                    if any(self._is_service(b, c.stable_service) for b in _refs(r))
                    and any(self._is_service(b, c.canary_service) for b in _refs(r))]
            what = f"referencing both {c.stable_service} and {c.canary_service}"
        if len(hits) != 1:
            count = "no rule" if not hits else f"{len(hits)} rules"
            raise RouterError(f"{self.ref}: {count} {what}; choose one with rule (an index), "
                              "ruleName or match in the router block")
        return hits[0]

    def _is_service(self, ref: dict[str, Any], service: str) -> bool:
        return (
            ref.get("name") == service
            and ref.get("kind", "Service") == "Service"
            and ref.get("group", "") == ""
            and ref.get("namespace", self.config.namespace) == self.config.namespace
            and (self.config.port is None or ref.get("port") == self.config.port)
        )


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
