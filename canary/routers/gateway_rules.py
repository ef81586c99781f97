"""The HTTPRoute pieces the gateway-api router writes beside the weights.

Its match rule, its ``RequestMirror`` filter and session persistence, as pure functions of
the rule read from the cluster (gateway_api.py explains what each is for and why it
looks this way). Kept apart so the router module stays about finding and patching.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from canary.errors import RouterError
from canary.routers.features import Match, Sticky
from canary.routers.kube import Patch
from canary.routers.kube_rules import cookie_regex, covers, gateway_duration, header_regex

Obj = dict[str, Any]
DEFAULT_MATCH = [{"path": {"type": "PathPrefix", "value": "/"}}]  # a rule without matches


def match_rule(weighted: Obj, *, name: str, match: Match, canary: Obj,
               is_own_mirror: Callable[[Obj], bool], where: str) -> Obj:
    """The rule sending ``weighted``'s requests that carry ``match`` to ``canary``."""
    if match.header is not None:
        header_name = match.header
        header = ({"type": "Exact", "name": header_name, "value": match.value}
                  if match.value is not None else
                  {"type": "RegularExpression", "name": header_name,
                   "value": header_regex(str(match.regex))})
    else:
        header_name = "Cookie"
        header = {"type": "RegularExpression", "name": header_name,
                  "value": cookie_regex(match)}
    matches = []
    for m in weighted.get("matches") or DEFAULT_MATCH:
        headers = list(m.get("headers") or [])
        if any(str(h.get("name", "")).lower() == header_name.lower() for h in headers):
            raise RouterError(f"{where}: the weighted rule already matches on header "
                              f"{header_name}; canary cannot add its match on the same header")
        matches.append({**copy.deepcopy(m), "headers": [*headers, header]})
    rule: Obj = {"name": name, "matches": matches, "backendRefs": [canary]}
    # The rest of the rule (filters, timeouts, retry) applies to matched requests too;
    # not canary's mirror, which would copy canary traffic to the canary.
    for key, value in weighted.items():
        if key not in ("name", "matches", "backendRefs", "sessionPersistence", "filters"):
            rule[key] = copy.deepcopy(value)
    filters = [f for f in weighted.get("filters") or [] if not is_own_mirror(f)]
    if filters:
        rule["filters"] = copy.deepcopy(filters)
    return rule


def mirror_ops(rule: Obj, *, pointer: str, canary: Obj, percent: int,
               is_own_mirror: Callable[[Obj], bool]) -> Patch:
    """Ops leaving one RequestMirror filter to ``canary`` at ``percent`` (none at 0).

    ``pointer`` is the rule's ``filters`` list; the user's other filters are untouched.
    """
    filters = rule.get("filters") or []
    ours = [i for i, f in enumerate(filters) if is_own_mirror(f)]
    want = {"type": "RequestMirror", "requestMirror": {"backendRef": canary,
                                                       "percent": percent}}
    if percent == 0:
        if len(ours) == len(filters) and ours:  # leave no empty list behind
            return [{"op": "remove", "path": pointer}]
        return [{"op": "remove", "path": f"{pointer}/{i}"} for i in reversed(ours)]
    if len(ours) == 1 and covers(filters[ours[0]], want):
        return []
    ops: Patch = [{"op": "remove", "path": f"{pointer}/{i}"} for i in reversed(ours[1:])]
    if ours:
        return [*ops, {"op": "replace", "path": f"{pointer}/{ours[0]}", "value": want}]
    if "filters" not in rule:
        return [{"op": "add", "path": pointer, "value": [want]}]
    return [{"op": "add", "path": f"{pointer}/-", "value": want}]


def mirror_target(f: Obj) -> Obj:
    """The backendRef a RequestMirror filter copies to ({} for any other filter)."""
    if not isinstance(f, dict) or f.get("type") != "RequestMirror":
        return {}
    target = (f.get("requestMirror") or {}).get("backendRef")
    return target if isinstance(target, dict) else {}


def mirror_percent(f: Obj) -> int:
    """The share a RequestMirror filter copies: percent, fraction, or all when neither."""
    mirror = f.get("requestMirror") or {}
    if isinstance(mirror.get("percent"), int):
        return int(mirror["percent"])
    fraction = mirror.get("fraction")
    if isinstance(fraction, dict) and isinstance(fraction.get("numerator"), int):
        share = 100 * int(fraction["numerator"]) / int(fraction.get("denominator") or 100)
        return min(100, math.ceil(share))  # 1/1000 mirrored is not 0
    return 100


def persistence(sticky: Sticky) -> Obj:
    """``sessionPersistence`` for ``sticky``: a Permanent cookie living ``lifetime``."""
    return {"sessionName": sticky.cookie, "type": "Cookie",
            "absoluteTimeout": gateway_duration(sticky.lifetime),
            "cookieConfig": {"lifetimeType": "Permanent"}}
