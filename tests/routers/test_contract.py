"""The Router contract, run against every adapter (see harness.py for how to add one).

What every router must do for the controller to be safe: report the split actually in
effect (not what it was last asked), apply absolute splits idempotently, route everything
back to stable on reset, and on a refused change raise RouterError with the previous
split still in place.
"""

from __future__ import annotations

import pytest

from canary.errors import RouterError
from canary.model import Weights
from canary.routers.base import Router

from .harness import TRAFFIC_HARNESSES, RouterHarness, harness_id

SPLITS = [0, 5, 25, 50, 100]


def test_is_a_router_and_describes_itself(harness: RouterHarness) -> None:
    assert isinstance(harness.router, Router)
    line = harness.router.describe()
    assert line and "\n" not in line


def test_starts_all_stable_and_ensure_passes(harness: RouterHarness) -> None:
    harness.router.ensure()
    assert harness.router.get_weights() == Weights(canary=0)


@pytest.mark.parametrize("canary", SPLITS)
def test_set_then_get_returns_the_same_split(harness: RouterHarness, canary: int) -> None:
    harness.router.set_weights(Weights(canary=canary))
    assert harness.router.get_weights() == Weights(canary=canary)


def test_walks_the_default_stages_and_back(harness: RouterHarness) -> None:
    seen = []
    for canary in [5, 25, 50, 100, 50, 0]:
        harness.router.set_weights(Weights(canary=canary))
        seen.append(harness.router.get_weights().canary)
    assert seen == [5, 25, 50, 100, 50, 0]


def test_setting_the_same_split_twice_is_harmless(harness: RouterHarness) -> None:
    harness.router.set_weights(Weights(canary=25))
    harness.router.set_weights(Weights(canary=25))
    assert harness.router.get_weights() == Weights(canary=25)


def test_reset_routes_everything_to_stable(harness: RouterHarness) -> None:
    harness.router.set_weights(Weights(canary=50))
    harness.router.set_weights(Weights(canary=0))
    assert harness.router.get_weights() == Weights(canary=0)


def test_refused_change_raises_and_keeps_the_previous_split(harness: RouterHarness) -> None:
    if harness.refusing is None:
        pytest.skip("this router has no backend that could refuse a change")
    harness.router.set_weights(Weights(canary=25))
    with harness.refusing() as refusing_router, pytest.raises(RouterError):
        refusing_router.set_weights(Weights(canary=50))
    assert harness.router.get_weights() == Weights(canary=25)


def test_reports_a_split_changed_behind_its_back(harness: RouterHarness) -> None:
    if harness.set_by_hand is None:
        pytest.skip("nothing exists behind this router's back")
    harness.router.set_weights(Weights(canary=25))
    harness.set_by_hand(Weights(canary=60))
    assert harness.router.get_weights() == Weights(canary=60)
    harness.router.set_weights(Weights(canary=60))  # level-triggered re-apply is a no-op
    assert harness.router.get_weights() == Weights(canary=60)


def test_router_pointed_at_nothing_raises_router_error(harness: RouterHarness) -> None:
    if harness.broken is None:
        pytest.skip("this router cannot point at anything")
    broken = harness.broken()
    with pytest.raises(RouterError):
        broken.ensure()
    with pytest.raises(RouterError):
        broken.get_weights()
    with pytest.raises(RouterError):
        broken.set_weights(Weights(canary=5))


# --- the data plane: requests really split as reported -------------------------------

traffic = pytest.mark.parametrize("traffic_harness", TRAFFIC_HARNESSES, ids=harness_id,
                                  indirect=True)
REQUESTS = 400
TOLERANCE = 3  # percentage points


@pytest.fixture
def traffic_harness(request: pytest.FixtureRequest) -> RouterHarness:
    value: RouterHarness = request.getfixturevalue(request.param)
    assert value.apply is not None and value.send is not None
    return value


@traffic
@pytest.mark.parametrize("canary", [5, 25, 50, 75])
def test_requests_split_as_the_weights_say(traffic_harness: RouterHarness,
                                           canary: int) -> None:
    assert traffic_harness.apply is not None and traffic_harness.send is not None
    traffic_harness.apply(Weights(canary=canary))
    counted = traffic_harness.send(REQUESTS)
    assert sum(counted.values()) == REQUESTS
    measured = 100 * counted["canary"] / REQUESTS
    assert abs(measured - canary) <= TOLERANCE, counted


@traffic
@pytest.mark.parametrize(("canary", "only"), [(0, "stable"), (100, "canary")])
def test_an_empty_side_gets_no_request(traffic_harness: RouterHarness, canary: int,
                                       only: str) -> None:
    assert traffic_harness.apply is not None and traffic_harness.send is not None
    traffic_harness.apply(Weights(canary=50))
    traffic_harness.apply(Weights(canary=canary))
    assert traffic_harness.send(100) == {only: 100}


@traffic
def test_refused_change_keeps_serving_the_previous_split(traffic_harness: RouterHarness) -> None:
    assert traffic_harness.apply is not None and traffic_harness.send is not None
    assert traffic_harness.refusing is not None
    traffic_harness.apply(Weights(canary=25))
    with traffic_harness.refusing() as refusing_router, pytest.raises(RouterError):
        refusing_router.set_weights(Weights(canary=75))
    counted = traffic_harness.send(REQUESTS)
    assert abs(100 * counted["canary"] / REQUESTS - 25) <= TOLERANCE, counted
