"""Router for the Service Mesh Interface: the backend weights of one SMI TrafficSplit.

Linkerd (through its SMI extension), Open Service Mesh and others split the traffic sent
to a root Service between the TrafficSplit's backends in proportion to their weights.
canary writes stable=100-N and canary=N into the two backends, which must exist.

A TrafficSplit is weights: no mirroring, no session affinity, and its ``matches``
(HTTPRouteGroups, v1alpha3 and later) only narrow which requests that one split applies
to; sending matched requests to the canary would take a second TrafficSplit, which canary
does not manage. So this router
declares none of the features in features.py, and a rollout asking for one is refused as
an input error naming smi and the feature.
"""

from __future__ import annotations

from typing import Any, Literal

from kubernetes.client import CustomObjectsApi
from pydantic import Field, model_validator

from canary.routers.kube import (
    KubeConnection,
    KubeObjects,
    ObjectRef,
)
from canary.routers.kube_weights import WeightedObjectRouter, WeightedPair, find_pair

FEATURES: frozenset[str] = frozenset()

GROUP = "split.smi-spec.io"


class Config(KubeConnection):
    """The ``router`` block of a rollout with ``type: smi``."""

    traffic_split: str = Field(min_length=1)
    stable_service: str = Field(min_length=1)
    canary_service: str = Field(min_length=1)
    # v1alpha1 is left out on purpose: its weights are quantities ("500m"), not integers.
    version: Literal["v1alpha2", "v1alpha3", "v1alpha4"] = "v1alpha2"

    @model_validator(mode="after")
    def _distinct(self) -> Config:
        if self.stable_service == self.canary_service:
            raise ValueError("stableService and canaryService must be different Services")
        return self


class SMIRouter(WeightedObjectRouter):
    """Moves traffic between two backends of one TrafficSplit."""

    def __init__(self, config: Config, *, api: CustomObjectsApi | None = None) -> None:
        ref = ObjectRef(GROUP, config.version, "trafficsplits", "TrafficSplit",
                        config.namespace, config.traffic_split)
        super().__init__(ref, KubeObjects(config, api=api))
        self.config = config

    def describe(self) -> str:
        c = self.config
        return (f"smi TrafficSplit {c.namespace}/{c.traffic_split} "
                f"({c.stable_service} -> {c.canary_service})")

    def locate(self, obj: dict[str, Any]) -> WeightedPair:
        c = self.config
        return find_pair(
            (obj.get("spec") or {}).get("backends"),
            pointer="/spec/backends", where=str(self.ref), default=0,
            is_stable=lambda b: b.get("service") == c.stable_service,
            is_canary=lambda b: b.get("service") == c.canary_service,
            label=lambda b: f"Service {b.get('service')}",
            stable_name=f"Service {c.stable_service}",
            canary_name=f"Service {c.canary_service}",
        )


def from_config(config: Config, *, api: CustomObjectsApi | None = None) -> SMIRouter:
    return SMIRouter(config, api=api)
