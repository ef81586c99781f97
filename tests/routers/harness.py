"""What the router contract suite needs from each adapter under test.

A harness is a router plus the means to reach around it: change the split by hand on the
backend, make the backend refuse changes, point a router at nothing, and (for routers
with a data plane here) send traffic and count where it went. To put a new adapter under
the contract suite, write a function-scoped fixture returning a ``RouterHarness`` with the
backend reset to all-stable, and add its name to ``HARNESSES`` (and ``TRAFFIC_HARNESSES``
if it can count traffic).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pytest

from canary.model import Weights
from canary.routers.base import Router

HARNESSES = [
    "null_harness",
    "command_harness",
    "http_harness",
    pytest.param("haproxy_harness", marks=pytest.mark.servers),
    pytest.param("nginx_harness", marks=pytest.mark.servers),
]
TRAFFIC_HARNESSES = [
    pytest.param("haproxy_harness", marks=pytest.mark.servers),
    pytest.param("nginx_harness", marks=pytest.mark.servers),
]


def harness_id(name: str) -> str:
    return name.removesuffix("_harness")


@dataclass
class RouterHarness:
    router: Router
    # Change the split on the backend directly, not through the adapter.
    set_by_hand: Callable[[Weights], None] | None = None
    # While open, changes through the yielded router are refused by the backend.
    refusing: Callable[[], AbstractContextManager[Router]] | None = None
    # A router of this type pointed at something that does not exist.
    broken: Callable[[], Router] | None = None
    # Apply a split through the adapter and wait until the data plane serves it.
    apply: Callable[[Weights], None] | None = None
    # Send n requests through the data plane; counts per side ("stable", "canary").
    send: Callable[[int], Counter[str]] | None = None


def sides(tally: Counter[str]) -> Counter[str]:
    """Backend names ("stable-1", "canary-1", ...) folded into their side."""
    folded: Counter[str] = Counter()
    for name, n in tally.items():
        folded[name.split("-")[0]] += n
    return folded

