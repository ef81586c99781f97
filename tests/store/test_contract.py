"""What every StateStore must do: CAS saves, one active rollout per name, keyed events,
leases that stop a second owner but not a rerun after the first owner died."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from canary.errors import ConflictError, NotFoundError
from canary.model import Command, Event, MetricResult, Outcome, Phase
from canary.state import AttemptProgress, StageProgress
from canary.store.base import StateStore
from canary.store.lease import LeaseOwner
from tests.rollout.helpers import T0, at, new_state


def test_create_get_roundtrip(store: StateStore) -> None:
    s = store.create(new_state(revision=0, command=Command.PAUSE))
    assert s.revision == 1
    got = store.get("checkout")
    assert got == s


def test_get_unknown_is_not_found(store: StateStore) -> None:
    with pytest.raises(NotFoundError):
        store.get("nope")


def test_save_is_compare_and_set(store: StateStore) -> None:
    s = store.create(new_state(revision=0))
    s2 = store.save(dataclasses.replace(s, desired_weight=5))
    assert s2.revision == 2 and store.get("checkout").desired_weight == 5
    with pytest.raises(ConflictError):
        store.save(dataclasses.replace(s, desired_weight=25))  # stale revision
    assert store.get("checkout").desired_weight == 5


def test_one_active_rollout_per_name(store: StateStore) -> None:
    s = store.create(new_state(revision=0))
    with pytest.raises(ConflictError):
        store.create(new_state(id="r2", revision=0))
    store.save(dataclasses.replace(s, phase=Phase.SUCCEEDED))
    second = store.create(new_state(id="r2", revision=0, created_at=at(100)))
    assert store.get("checkout").id == second.id
    assert [x.id for x in store.list_active()] == ["r2"]
    assert [x.id for x in store.history("checkout")] == ["r2", "r1"]


def test_events_saved_with_state_and_keys_are_unique(store: StateStore) -> None:
    s = store.create(new_state(revision=0), events=[Event(at=T0, kind="created", message="c")])
    store.save(s, events=[Event(at=at(1), kind="stage", message="5%", data={"w": 5})])
    assert store.append_event(s.id, Event(at=at(2), kind="notified", message="x", key="k1"))
    assert not store.append_event(s.id, Event(at=at(3), kind="notified", message="x", key="k1"))
    assert store.has_event_key("k1") and not store.has_event_key("k2")
    evs = store.events(s.id)
    assert [e.kind for e in evs] == ["created", "stage", "notified"]
    assert evs[1].data == {"w": 5}
    assert [e.kind for e in store.events(s.id, limit=1)] == ["notified"]


def test_failed_save_appends_no_events(store: StateStore) -> None:
    s = store.create(new_state(revision=0))
    store.save(s)
    with pytest.raises(ConflictError):
        store.save(s, events=[Event(at=at(1), kind="ghost", message="never")])
    assert [e.kind for e in store.events(s.id)] == []


def test_promotion_records_the_stable_version(store: StateStore) -> None:
    s = store.create(new_state(revision=0))
    assert store.last_stable_version("checkout") is None
    store.save(dataclasses.replace(s, phase=Phase.SUCCEEDED))
    assert store.last_stable_version("checkout") == "2.0.0"


def test_lease_blocks_a_live_owner_and_allows_renewal(store: StateStore) -> None:
    me, other = LeaseOwner.here(), LeaseOwner.here()
    store.acquire_lease("checkout", me, ttl=30, now=T0)
    store.acquire_lease("checkout", me, ttl=30, now=at(10))  # heartbeat
    with pytest.raises(ConflictError, match="another controller"):
        store.acquire_lease("checkout", other, ttl=30, now=at(20))
    store.acquire_lease("checkout", other, ttl=30, now=at(41))  # expired: taken over
    store.release_lease("checkout", other)
    store.acquire_lease("checkout", me, ttl=30, now=at(42))


def test_lease_of_a_dead_process_is_taken_over_at_once(store: StateStore) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = LeaseOwner.of_process(child.pid)
    assert dead.provably_gone()
    store.acquire_lease("checkout", dead, ttl=3600, now=T0)
    store.acquire_lease("checkout", LeaseOwner.here(), ttl=30, now=T0 + timedelta(seconds=1))


def test_lease_of_another_host_is_not_assumed_dead(store: StateStore) -> None:
    remote = LeaseOwner(id="remote", host="elsewhere.example", pid=os.getpid() + 10**6)
    assert not remote.provably_gone()
    store.acquire_lease("checkout", remote, ttl=30, now=T0)
    with pytest.raises(ConflictError):
        store.acquire_lease("checkout", LeaseOwner.here(), ttl=30, now=at(1))


def test_state_with_awkward_values_round_trips_exactly(store: StateStore) -> None:
    # A judge's memory holds raw floats (NaN, infinities: not JSON, refused by JSONB); a
    # message can quote a command's output (NUL). None of it may break or bend a save.
    odd = MetricResult(name="p99", outcome=Outcome.FAILED, value=float("inf"),
                       query='histogram_quantile(0.99, x{v="\\"2\\""})', message="a\x00b ü ✓")
    memory = {"nan": float("nan"), "inf": float("-inf"), "big": 1e300, "n": [1, 2.5]}
    s = store.create(new_state(revision=0, message="gate: \x00",
                               run=AttemptProgress(last_results=(odd,), judge_memory=memory),
                               stage=StageProgress(started_at=at(0.123456))))
    got = store.get("checkout")
    assert got.judge_memory is not None and math.isnan(got.judge_memory["nan"])
    assert {k: v for k, v in got.judge_memory.items() if k != "nan"} == {
        "inf": float("-inf"), "big": 1e300, "n": [1, 2.5]}
    assert dataclasses.replace(got, run=dataclasses.replace(got.run, judge_memory=None)) == \
        dataclasses.replace(s, run=dataclasses.replace(s.run, judge_memory=None))


def test_events_keep_time_data_and_key_exactly(store: StateStore) -> None:
    s = store.create(new_state(revision=0))
    sent = [Event(at=at(1.5), kind="stage", message="5%", data={"w": 5, "r": [0.1, None]}),
            Event(at=at(2.000001), kind="notified", message="x", data={}, key="k")]
    for e in sent:
        store.append_event(s.id, e)
    got = store.events(s.id)
    assert got == sent
    assert all(e.at.utcoffset() == timedelta(0) for e in got)


def _claimer(store: StateStore) -> Any:
    return store.claim_rollouts  # part of the StateStore contract


def test_claim_rollouts_takes_free_expired_and_dead_leases_only(store: StateStore) -> None:
    claim = _claimer(store)
    for i, name in enumerate("abcde"):
        store.create(new_state(id=f"r-{name}", name=name, revision=0, created_at=at(i)))
    done = store.create(new_state(id="r-f", name="f", revision=0, created_at=at(5)))
    store.save(dataclasses.replace(done, phase=Phase.SUCCEEDED))  # finished: nobody claims it
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    live, me = LeaseOwner.here(), LeaseOwner.here()
    remote = LeaseOwner(id="remote", host="elsewhere.example", pid=os.getpid() + 10**6)
    store.acquire_lease("a", live, ttl=30, now=T0)  # live here: kept
    store.acquire_lease("b", remote, ttl=30, now=T0)  # live elsewhere: kept
    store.acquire_lease("c", remote, ttl=5, now=T0)  # expired by at(10)
    store.acquire_lease("d", LeaseOwner.of_process(child.pid), ttl=3600,
                        now=T0)  # provably gone
    assert claim(me, ttl=30, now=at(10), limit=10) == ["c", "d", "e"]  # oldest first
    assert claim(me, ttl=30, now=at(11), limit=10) == []  # already mine and live
    for name in ("c", "d", "e"):  # really leased to me: others are kept out
        with pytest.raises(ConflictError, match="another controller"):
            store.acquire_lease(name, live, ttl=30, now=at(12))
        store.acquire_lease(name, me, ttl=30, now=at(12))  # and I can renew


def test_claim_rollouts_splits_work_and_takes_over_a_silent_owner(store: StateStore) -> None:
    claim = _claimer(store)
    for i in range(5):
        store.create(new_state(id=f"r{i}", name=f"svc-{i}", revision=0, created_at=at(i)))
    a, b = LeaseOwner.here(), LeaseOwner.here()
    assert claim(a, ttl=30, now=at(10), limit=3) == ["svc-0", "svc-1", "svc-2"]
    assert claim(b, ttl=30, now=at(10), limit=3) == ["svc-3", "svc-4"]
    assert claim(a, ttl=30, now=at(11), limit=0) == []
    for name in ("svc-3", "svc-4"):  # b heartbeats, a falls silent
        store.acquire_lease(name, b, ttl=30, now=at(30))
    assert claim(b, ttl=30, now=at(41), limit=10) == ["svc-0", "svc-1", "svc-2"]
