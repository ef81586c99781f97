"""The router contract suite (test_contract.py), run on the three Kubernetes routers.

The suite's tests that take a ``harness`` are collected here again, with ``harness``
overridden by one per Kubernetes adapter on the fake API server, so the adapters meet the
same contract as every other router without a change to the shared suite. To join the
shared suite instead, conftest.py can build the same harness with ``kube_harness``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from canary.routers.base import Router
from canary.routers.kube import api_for
from canary.routers.kube_weights import WeightedObjectRouter
from lab.fake_kube import FakeKube

from . import test_contract
from .harness import RouterHarness
from .test_kube_routers import CASES, make_setup

for _name, _test in vars(test_contract).items():
    if _name.startswith("test_") and "harness" in inspect.signature(_test).parameters:
        globals()[_name] = _test


def kube_harness(fake: FakeKube, router_type: str, made: list[WeightedObjectRouter]
                 ) -> RouterHarness:
    """A contract harness for one Kubernetes adapter; routers it makes go into ``made``."""
    case = CASES[router_type]
    setup = make_setup(fake, case)
    made.append(setup.router)

    @contextmanager
    def refusing() -> Iterator[Router]:  # RBAC or an admission webhook says no
        fake.fail_next(403, times=None, methods=("PATCH",))
        try:
            yield setup.router
        finally:
            fake.clear_failures()

    def broken() -> Router:  # the same router, for an object that does not exist
        options: dict[str, Any] = {**case.options(), "namespace": "nowhere"}
        config = case.module.Config.model_validate(options)
        router: WeightedObjectRouter = case.module.from_config(
            config, api=api_for(fake.configuration()))
        made.append(router)
        return router

    return RouterHarness(router=setup.router, set_by_hand=setup.change_behind_back,
                         refusing=refusing, broken=broken)


@pytest.fixture(params=sorted(CASES))
def harness(request: pytest.FixtureRequest) -> Iterator[RouterHarness]:
    made: list[WeightedObjectRouter] = []
    with FakeKube() as fake:
        yield kube_harness(fake, request.param, made)
        for router in made:
            router.close()
