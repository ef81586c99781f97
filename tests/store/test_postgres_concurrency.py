"""Races on the shared store, through separate connections as separate controllers have:
every round, contenders released together by a barrier, and the database must pick exactly
one winner (lease, compare-and-set save, create) or split the work without overlap (claims).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg
import pytest

from canary.errors import ConflictError
from canary.model import Event, Phase
from canary.store.lease import LeaseOwner
from canary.store.postgres import PostgresStore
from tests.rollout.helpers import T0, at, new_state

pytestmark = pytest.mark.servers

T = TypeVar("T")
A = TypeVar("A")
ROUNDS = 40


@pytest.fixture
def stores(postgres_url: str) -> Iterator[list[PostgresStore]]:
    """Four stores, four connections, one schema: four controllers."""
    opened = [PostgresStore(postgres_url) for _ in range(4)]
    yield opened
    for s in opened:
        s.close()


def race(stores: list[PostgresStore], attempt: Callable[[int, PostgresStore, A], T],
         arg: A) -> list[T | ConflictError]:
    """Run ``attempt(i, store, arg)`` for every store at once; a ConflictError is a
    result. (``arg`` carries the round's values: closures over loop variables are fragile.)"""
    start = threading.Barrier(len(stores))

    def one(i: int) -> T | ConflictError:
        start.wait(timeout=10)
        try:
            return attempt(i, stores[i], arg)
        except ConflictError as exc:
            return exc

    with ThreadPoolExecutor(len(stores)) as pool:
        return list(pool.map(one, range(len(stores))))


def outcome(results: Sequence[object]) -> list[str]:
    return [type(r).__name__ for r in results]


def lease_holders(url: str) -> dict[str, str]:
    """Who holds each lease, read behind the stores' backs."""
    with psycopg.connect(url) as conn:
        return {str(name): str(owner)
                for name, owner in conn.execute("SELECT name, owner FROM leases")}


def test_racing_for_a_lease_has_exactly_one_winner(stores: list[PostgresStore],
                                                   postgres_url: str) -> None:
    owners = [LeaseOwner.here() for _ in stores]
    remote = LeaseOwner(id="remote", host="elsewhere.example", pid=1)
    for n in range(ROUNDS):
        name = f"r{n}"
        if n % 2:  # half the rounds: everyone sees an expired lease and tries to take it
            stores[0].acquire_lease(name, remote, ttl=1, now=T0)
        results = race(stores, lambda i, s, name: s.acquire_lease(name, owners[i], ttl=30,
                                                                 now=at(5)), name)
        winners = [i for i, r in enumerate(results) if not isinstance(r, ConflictError)]
        assert len(winners) == 1, f"round {n}: {outcome(results)}"
        assert lease_holders(postgres_url)[name] == owners[winners[0]].id


def test_concurrent_saves_at_one_revision_let_exactly_one_through(
        stores: list[PostgresStore]) -> None:
    for n in range(ROUNDS):
        base = stores[0].create(new_state(id=f"s{n}", name=f"svc-{n}", revision=0))
        results = race(stores, lambda i, s, base: s.save(
            dataclasses.replace(base, desired_weight=i + 1),
            events=[Event(at=at(1), kind=f"by-{i}", message="")]), base)
        winners = [i for i, r in enumerate(results) if not isinstance(r, ConflictError)]
        assert len(winners) == 1, f"round {n}: {outcome(results)}"
        got = stores[0].get(f"svc-{n}")
        assert (got.revision, got.desired_weight) == (2, winners[0] + 1)
        assert [e.kind for e in stores[0].events(base.id)] == [f"by-{winners[0]}"]


def test_concurrent_creates_leave_one_active_rollout(stores: list[PostgresStore]) -> None:
    for n in range(ROUNDS):
        results = race(stores, lambda i, s, n: s.create(
            new_state(id=f"c{n}-{i}", name=f"svc-{n}", revision=0)), n)
        winners = [r for r in results if not isinstance(r, ConflictError)]
        assert len(winners) == 1, f"round {n}: {outcome(results)}"
    assert len(stores[0].list_active()) == ROUNDS


@pytest.mark.parametrize("limit", [100, 7])
def test_concurrent_claims_split_the_rollouts_without_overlap(
        stores: list[PostgresStore], postgres_url: str, limit: int) -> None:
    names = {f"svc-{i:02}" for i in range(30)}
    for i, name in enumerate(sorted(names)):
        stores[0].create(new_state(id=f"r{i}", name=name, revision=0, created_at=at(i)))
    owners = [LeaseOwner.here() for _ in stores]
    for n in range(5):  # each round starts after every lease of the round before expired
        now = at(100 * (n + 1))
        claims = race(stores, lambda i, s, now: s.claim_rollouts(owners[i], ttl=30, now=now,
                                                                limit=limit), now)
        lists = [c for c in claims if not isinstance(c, ConflictError)]
        assert len(lists) == len(stores)
        got = [name for claimed in lists for name in claimed]
        assert len(got) == len(set(got)), f"round {n}: overlap in {lists}"
        assert len(got) == min(len(names), limit * len(stores))
        assert set(got) <= names
        holders = lease_holders(postgres_url)
        for i, claimed in enumerate(lists):
            assert all(holders[name] == owners[i].id for name in claimed)


def test_a_claim_racing_a_deploy_leaves_one_owner(stores: list[PostgresStore],
                                                  postgres_url: str) -> None:
    replica, deploy = LeaseOwner.here(), LeaseOwner.here()
    for n in range(ROUNDS):
        name = f"svc-{n}"
        stores[0].create(new_state(id=f"r{n}", name=name, revision=0, created_at=at(n)))
        pair = stores[:2]
        claimed, acquired = race(pair, lambda i, s, name: s.claim_rollouts(
            replica, ttl=30, now=at(0), limit=1) if i == 0 else s.acquire_lease(
            name, deploy, ttl=30, now=at(0)), name)
        replica_won = claimed == [name]
        deploy_won = not isinstance(acquired, ConflictError)
        assert replica_won != deploy_won, f"round {n}: {claimed}, {acquired}"
        assert lease_holders(postgres_url)[name] == (replica if replica_won else deploy).id
        # end it, so the next round's claim only sees the next rollout
        stores[0].save(dataclasses.replace(stores[0].get(name), phase=Phase.FAILED))


def test_a_serializable_server_default_still_reports_a_lost_race_as_a_conflict(
        postgres_url: str) -> None:
    # A DBA's default_transaction_isolation must not turn "someone saved first" into a
    # temporary error: the store pins READ COMMITTED, which its locking is written for.
    url = postgres_url.replace("options=", "options=-cdefault_transaction_isolation%3D"
                                           "serializable%20")
    stores = [PostgresStore(url) for _ in range(4)]
    try:
        for n in range(10):
            base = stores[0].create(new_state(id=f"s{n}", name=f"svc-{n}", revision=0))
            results = race(stores, lambda i, s, base: s.save(
                dataclasses.replace(base, desired_weight=i)), base)
            assert outcome(results).count("ConflictError") == 3, f"round {n}: {outcome(results)}"
    finally:
        for s in stores:
            s.close()
