"""The store under faults, on every implementation: corrupt or foreign rows, a schema
version that is not a number, coalesced repeats, bounded reads, and lease owners told apart
by more than host and pid (PID namespace, boot, start time)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid

import pytest

from canary.errors import ConflictError
from canary.model import Event, Phase
from canary.store.base import StateStore, StoreError
from canary.store.lease import LeaseOwner, _boot_id, _pid_namespace
from canary.store.sqlite import SQLiteStore
from tests.rollout.helpers import T0, at, new_state


def raw(store: StateStore, sql: str) -> None:
    """Write behind the store's back, as a disk fault or another program would."""
    if isinstance(store, SQLiteStore):
        store._db.execute(sql)
    else:
        store._db.run(lambda cur: cur.execute(sql))  # type: ignore[attr-defined]


def reopen(store: StateStore) -> StateStore:
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store._path)
    from canary.store.postgres import PostgresStore

    return PostgresStore(store._db._url)  # type: ignore[attr-defined]


def test_repeated_events_are_coalesced_with_count_and_times(store: StateStore) -> None:
    s = store.create(new_state(revision=0), events=[Event(at=T0, kind="created", message="c")])
    for i in range(1, 6):
        assert store.append_event(s.id, Event(at=at(i), kind="router-error",
                                              message="could not set 5%: down"))
    store.save(s, events=[Event(at=at(6), kind="router-error",
                                message="could not set 5%: down")])  # through a save too
    store.append_event(s.id, Event(at=at(7), kind="router-error", message="other"))
    store.append_event(s.id, Event(at=at(8), kind="router-error", message="other",
                                   data={"x": 1}))  # other data: its own row
    store.append_event(s.id, Event(at=at(9), kind="notified", message="k", key="k1"))
    store.append_event(s.id, Event(at=at(10), kind="notified", message="k", key="k2"))
    evs = store.events(s.id)
    assert [e.kind for e in evs] == ["created", "router-error", "router-error", "router-error",
                                     "notified", "notified"]
    folded = evs[1]
    assert folded.at == at(1) and folded.data["count"] == 6
    assert folded.data["last_at"] == at(6).isoformat()
    assert "count" not in evs[2].data and evs[3].data == {"x": 1}


def test_events_with_a_limit_read_only_the_newest(store: StateStore) -> None:
    s = store.create(new_state(revision=0))
    for i in range(30):
        store.append_event(s.id, Event(at=at(i), kind="tick", message=f"#{i}"))
    assert [e.message for e in store.events(s.id, limit=3)] == ["#27", "#28", "#29"]
    assert len(store.events(s.id)) == 30


def test_a_corrupt_rollout_row_is_a_store_error(store: StateStore) -> None:
    store.create(new_state(revision=0))
    raw(store, "UPDATE rollouts SET state = '{\"id\": \"r1\", truncated'")
    with pytest.raises(StoreError, match="cannot be read"):
        store.get("checkout")
    with pytest.raises(StoreError):
        store.list_active()
    raw(store, "UPDATE rollouts SET state = '{\"name\": \"checkout\"}'")  # foreign JSON
    with pytest.raises(StoreError, match="corrupt"):
        store.history("checkout")


def test_corrupt_event_data_is_a_store_error(store: StateStore) -> None:
    s = store.create(new_state(revision=0), events=[Event(at=T0, kind="created", message="c")])
    raw(store, "UPDATE events SET data = '[1, 2'")
    with pytest.raises(StoreError, match="event"):
        store.events(s.id)


def test_a_schema_version_that_is_not_a_number_is_a_store_error(store: StateStore) -> None:
    raw(store, "UPDATE meta SET value = 'one' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="not a number"):
        reopen(store)


def test_lease_of_a_live_owner_in_another_pid_namespace_is_never_taken(
        store: StateStore) -> None:
    # A container on host networking: same hostname, its own PID namespace, where "its"
    # pid means nothing here (here it is a process that has exited).
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    there = LeaseOwner(id=f"{uuid.uuid4().hex}@1{_pid_namespace()}:{_boot_id()}:1",
                       host=LeaseOwner.here().host, pid=child.pid)
    assert not there.provably_gone()
    store.acquire_lease("checkout", there, ttl=30, now=T0)
    with pytest.raises(ConflictError, match="another controller"):
        store.acquire_lease("checkout", LeaseOwner.here(), ttl=30, now=at(29))
    store.acquire_lease("checkout", LeaseOwner.here(), ttl=30, now=at(31))  # expired


def test_provably_gone_needs_host_namespace_boot_and_a_gone_or_reused_pid() -> None:
    me = LeaseOwner.here()
    ns, boot = _pid_namespace(), _boot_id()
    assert ns and boot and not me.provably_gone()
    reused = LeaseOwner(id=f"x@{ns}:{boot}:1", host=me.host, pid=os.getpid())
    assert reused.provably_gone()  # this pid started later than the owner did
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert LeaseOwner.of_process(child.pid).provably_gone()
    for ident in (f"x@{ns}:another-boot:1", f"x@{ns}9:{boot}:1", "old-style-id"):
        assert not LeaseOwner(id=ident, host=me.host, pid=child.pid).provably_gone()
    assert not LeaseOwner(id=f"x@{ns}:{boot}:1", host="elsewhere",
                          pid=child.pid).provably_gone()


def test_a_promotion_survives_coalescing_of_its_events(store: StateStore) -> None:
    s = store.create(new_state(revision=0))
    s = store.save(s, events=[Event(at=at(1), kind="drift", message="5% wanted")])
    s = store.save(dataclasses.replace(s, phase=Phase.SUCCEEDED),
                   events=[Event(at=at(2), kind="drift", message="5% wanted"),
                           Event(at=at(2), kind="promoted", message="done")])
    assert [e.kind for e in store.events(s.id)] == ["drift", "promoted"]
    assert store.last_stable_version("checkout") == "2.0.0"


def test_a_foreign_table_is_a_store_error_not_a_retry(store: StateStore) -> None:
    raw(store, "DROP TABLE events")
    raw(store, "CREATE TABLE events (id INTEGER, note TEXT)")  # another program's table
    with pytest.raises(StoreError):
        store.events("r1")
    with pytest.raises(StoreError):
        store.create(new_state(revision=0), events=[Event(at=T0, kind="c", message="c")])
