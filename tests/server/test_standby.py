"""A standby replica waits to be handed a rollout: it never tries the lease on its own while
the owner lives, and takes the rollout over through discovery's ``claim_rollouts`` once the
lease is free. The controllers are real (scheduler, pooled SQLite store, leases); only the
runner is a stand-in that takes the lease the way ``Runner.tick`` does, so no router or
Prometheus is needed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from canary.server.controller import Controller
from canary.server.pooled import PooledStore
from canary.state import RolloutState
from canary.store.base import StateStore
from canary.store.lease import LeaseOwner
from canary.store.sqlite import SQLiteStore
from lab.proc import wait_until
from tests.rollout.helpers import new_state


class LeaseRunner:
    """Ticks by taking the rollout's lease, as ``Runner.tick`` does first; counts tries."""

    def __init__(self, state: RolloutState, store: StateStore) -> None:
        self.name, self.store = state.name, store
        self.owner: LeaseOwner | None = None  # set by the controller
        self.lease_ttl, self.reporter, self.result_pending = 30.0, None, False
        self.plan = SimpleNamespace(interval=0.05)
        self.tries = self.ticks = 0

    def tick(self) -> RolloutState:
        self.tries += 1
        assert self.owner is not None
        self.store.acquire_lease(self.name, self.owner, ttl=self.lease_ttl,
                                 now=datetime.now(UTC))
        self.ticks += 1
        return self.store.get(self.name)


class CountingStore(PooledStore):
    claims = 0

    def claim_rollouts(self, owner: LeaseOwner, *, ttl: float, now: datetime,
                       limit: int) -> list[str]:
        self.claims += 1
        return super().claim_rollouts(owner, ttl=ttl, now=now, limit=limit)


def replica(path: Path) -> tuple[Controller, CountingStore, dict[str, LeaseRunner]]:
    store = CountingStore(lambda: SQLiteStore(str(path)))
    runners: dict[str, LeaseRunner] = {}

    def make(state: RolloutState, s: StateStore) -> Any:
        runners[state.name] = LeaseRunner(state, s)
        return runners[state.name]

    ctl = Controller(store, runner_factory=make, tick=0.05, lease_ttl=30, workers=4,
                     discover_every=0.1)
    return ctl, store, runners


def test_a_standby_waits_to_be_handed_the_rollout(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    seed = SQLiteStore(str(path))
    state = seed.create(new_state(id="r1", name="shop", service="shop"))
    seed.close()
    owner, owner_store, owner_runners = replica(path)
    standby, standby_store, standby_runners = replica(path)
    owner.start()
    owner.adopt(state)
    try:
        wait_until(lambda: owner_runners["shop"].ticks >= 3, timeout=30, what="owner ticks")
        standby.start()
        # The standby knows the rollout and asks for free rollouts every discovery round...
        wait_until(lambda: "shop" in standby_runners and standby_store.claims >= 5,
                   timeout=30, what="standby discovery rounds")
        # ...but never tries the live owner's lease on its own.
        assert standby_runners["shop"].tries == 0
        assert standby.owned() == [] and owner.owned() == ["shop"]
    finally:
        owner.stop()  # releases the lease
        owner_store.close()
    try:
        # Free now: the next claim hands it to the standby, which drives it.
        wait_until(lambda: standby_runners["shop"].ticks >= 1, timeout=30,
                   what="the standby taking the rollout over")
        assert standby.owned() == ["shop"]
    finally:
        standby.stop()
        standby_store.close()
