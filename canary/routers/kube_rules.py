"""What the gateway-api and istio adapters share for matches, mirroring and affinity.

Both write the header or cookie match (features.py) as an extra routing entry that canary
owns, identified by its ``name``, placed right before the weighted entry. This module
holds the parts that do not depend on the object's shape:

* the regular expressions: Envoy (behind Istio and most Gateway API implementations)
  matches a header regex against the *whole* value, nginx and HAProxy search in it.
  ``match.regex`` keeps the search meaning of the other routers, so it is wrapped as
  ``^.*(?:R).*$``, which means the same under both readings (RE2, as in Python, takes ``^``
  and ``$`` at the start and end of the text, so anchors inside ``R`` still work). Neither
  API has a cookie match, so a cookie becomes a regex on the ``Cookie`` header that
  finds ``NAME=VALUE`` between ``;`` separators; there ``^``/``$`` at the ends of ``R``
  anchor to the cookie value.
* the JSON patch that puts exactly one owned entry at its place (or none), removing
  stray or hand-edited copies: level-triggered like the weights.
* the Gateway API duration format for an affinity cookie lifetime.
"""

from __future__ import annotations

import re
from typing import Any

from canary.routers.features import Match
from canary.routers.kube import Patch


def header_regex(regex: str) -> str:
    """``regex`` as a whole-value pattern that matches what a search for it finds."""
    return f"^.*(?:{regex}).*$"


def cookie_regex(match: Match) -> str:
    """A whole-value pattern for the ``Cookie`` header finding the cookie ``match`` names."""
    assert match.cookie is not None
    if match.value is not None:
        value = re.escape(match.value)
    else:
        body = str(match.regex)
        start, end = "[^;]*", "[^;]*"
        if body.startswith("^"):
            body, start = body[1:], ""
        if body.endswith("$") and not body.endswith("\\$"):
            body, end = body[:-1], ""
        value = f"{start}(?:{body}){end}"
    return rf"^(?:.*;\s*)?{re.escape(match.cookie)}={value}(?:\s*;.*)?$"


def owned_ops(entries: list[Any], *, pointer: str, name: str, before: int,
              want: dict[str, Any] | None) -> Patch:
    """Ops leaving ``want`` (or nothing, for None) as the only entry named ``name``.

    ``before`` is the index of the weighted entry in ``entries`` as they are now; ``want``
    must sit right before it. Nothing to do when it already does: no write at all.
    """
    owned = [i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("name") == name]
    if want is not None and owned == [before - 1] and covers(entries[before - 1], want):
        return []
    ops: Patch = [{"op": "remove", "path": f"{pointer}/{i}"} for i in reversed(owned)]
    if want is not None:
        at = before - sum(1 for i in owned if i < before)
        ops.append({"op": "add", "path": f"{pointer}/{at}", "value": want})
    return ops


def covers(actual: Any, want: Any) -> bool:
    """Whether ``actual`` is ``want`` plus at most fields the API server defaulted.

    A real API server fills in defaults (``kind: Service``, ``weight: 1``...) on write, so
    an entry is not rewritten for holding them; but lists must have the same length, so
    an extra match added by hand (which would send more traffic to the canary) is repaired.
    """
    if isinstance(want, dict):
        return isinstance(actual, dict) and all(
            k in actual and covers(actual[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(actual, list) and len(actual) == len(want) and all(
            covers(a, w) for a, w in zip(actual, want, strict=True))
    return bool(actual == want) and type(actual) is type(want) or (
        isinstance(actual, (int, float)) and isinstance(want, (int, float))
        and not isinstance(actual, bool) and actual == want)


def user_indices(entries: list[Any], name: str) -> list[int]:
    """Indices of the entries canary does not own, so a user's ``rule: N`` keeps its meaning."""
    return [i for i, e in enumerate(entries)
            if not (isinstance(e, dict) and e.get("name") == name)]


def gateway_duration(seconds: float) -> str:
    """Seconds as a Gateway API Duration (``1h30m``: at most 5 digits per unit)."""
    ms = max(1, round(seconds * 1000))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s"),
                                          (millis, "ms")) if n]
    return "".join(parts)
