"""Which router types exist, and how a ``spec.router`` block becomes a Router.

Adapter modules are imported only when their type is used, so the Kubernetes client is
not loaded for an HAProxy rollout, and need not even be installed: it is the
``canary[kubernetes]`` extra, and a rollout naming a Kubernetes router without it is an
input error saying which pip install to run. An unknown type is an input error naming the known
ones, never a fallback to a default: a typo must not route traffic somewhere else.
Every adapter module defines ``Config`` (pydantic, the block minus ``type``) and
``from_config(config) -> Router``.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from canary.errors import InputError
from canary.routers.base import Router
from canary.routers.features import FEATURE_NAMES
from canary.specs import RouterSpec

# Routers whose client library is an optional extra of the canary package.
EXTRAS: dict[str, str] = {"kubernetes": "kubernetes"}  # top-level import -> canary[extra]

ROUTER_TYPES: dict[str, str] = {
    "command": "canary.routers.command",
    "gateway-api": "canary.routers.gateway_api",
    "haproxy": "canary.routers.haproxy",
    "http": "canary.routers.http",
    "istio": "canary.routers.istio",
    "nginx": "canary.routers.nginx",
    "null": "canary.routers.null",
    "smi": "canary.routers.smi",
}


def _module(type_name: str) -> ModuleType:
    path = ROUTER_TYPES.get(type_name)
    if path is None:
        raise InputError(f"unknown router type {type_name!r}; known types: "
                         f"{', '.join(sorted(ROUTER_TYPES))}", field="router.type")
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top in EXTRAS:
            raise InputError(f"router type {type_name!r} needs the {top} package, which is "
                             f"not installed: pip install 'canary[{EXTRAS[top]}]'",
                             field="router.type") from exc
        missing = "its adapter module" if exc.name == path else f"the Python package {exc.name}"
        raise InputError(f"router type {type_name!r} cannot be used: {missing} is not "
                         "installed", field="router.type") from exc


def router_config_model(type_name: str) -> type[BaseModel]:
    """The pydantic model that validates a ``spec.router`` block (without ``type``)."""
    model = getattr(_module(type_name), "Config", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{ROUTER_TYPES[type_name]} defines no pydantic Config model")
    return model


def router_features(type_name: str) -> frozenset[str]:
    """What a router type can do beyond a weighted split (see features.py)."""
    return frozenset(getattr(_module(type_name), "FEATURES", frozenset()))


def require_feature(type_name: str, feature: str, *, field: str) -> None:
    """InputError naming the router and the feature when ``type_name`` cannot do it."""
    if feature in router_features(type_name):
        return
    able = []
    for other in sorted(ROUTER_TYPES):
        with contextlib.suppress(InputError):  # an adapter whose extra is not installed
            if feature in router_features(other):
                able.append(other)
    raise InputError(f"router type {type_name!r} cannot do {FEATURE_NAMES[feature]}; "
                     f"routers that can: {', '.join(able) or 'none yet'}", field=field)


def build_router(spec: RouterSpec) -> Router:
    """A Router for ``spec``; InputError naming the field when an option is invalid."""
    for feature in ("match", "sticky"):
        if feature in spec.options:
            require_feature(spec.type, feature, field=f"router.{feature}")
    model = router_config_model(spec.type)
    try:
        config = model.model_validate(dict(spec.options))
    except ValidationError as exc:
        raise _input_error(spec.type, exc) from exc
    factory: Any = _module(spec.type).from_config
    router = factory(config)
    if not isinstance(router, Router):
        raise TypeError(f"{ROUTER_TYPES[spec.type]}.from_config returned {router!r}, "
                        "not a Router")
    return router


def _input_error(type_name: str, exc: ValidationError) -> InputError:
    errors = exc.errors()
    first = errors[0]
    path = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InputError(f"{first['msg']} for router type {type_name!r}{more}",
                      field=f"router.{path}" if path else "router")
