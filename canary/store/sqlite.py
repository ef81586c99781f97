"""The embedded store: one SQLite file, safe for a deploy and operator commands at once.

WAL mode and ``BEGIN IMMEDIATE`` serialise writers across processes; every state write is a
compare-and-set on the revision counter, in the same transaction as its events. sqlite3's
errors and unreadable rows are translated here (busy: TemporaryError; corrupt, foreign or
read-only: StoreError). Opening the file (private modes, WAL, the schema, a read-only
fallback for a database we may not write) is sqlite_file.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from canary.errors import ConflictError, NotFoundError
from canary.model import Event, Phase
from canary.state import RolloutState
from canary.store.base import StoreError
from canary.store.codec import coalesced, decode_event, decode_state
from canary.store.lease import LeaseOwner, holds, lease_conflict
from canary.store.sqlite_file import failure, open_database, transaction

P = ParamSpec("P")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, active INTEGER NOT NULL,
    revision INTEGER NOT NULL, phase TEXT NOT NULL, state TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_active ON rollouts(name) WHERE active = 1;
CREATE INDEX IF NOT EXISTS rollouts_name ON rollouts(name, created_at);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL, at TEXT NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT NOT NULL, key TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS events_rollout ON events(rollout_id, seq);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS services (
    service TEXT PRIMARY KEY, stable_version TEXT NOT NULL, updated_at TEXT NOT NULL);
"""


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.RLock()  # one connection: a lease heartbeat shares it
        self._db = open_database(path, schema=_SCHEMA)

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    def create(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        new = dataclasses.replace(state, revision=1)
        try:
            with self._tx() as db:
                db.execute("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (new.id, new.name, int(not new.phase.terminal), 1, new.phase.value,
                            json.dumps(new.to_json()), new.created_at.isoformat(),
                            new.updated_at.isoformat()))
                for e in events:
                    self._insert_event(db, new.id, e)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"a rollout named {state.name!r} is already active") from exc
        return new

    def get(self, name: str) -> RolloutState:
        row = self._db.execute(
            "SELECT state FROM rollouts WHERE name = ? ORDER BY created_at DESC, rowid DESC "
            "LIMIT 1", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no rollout named {name!r}")
        return self._state(row[0])

    def save(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        new = dataclasses.replace(state, revision=state.revision + 1)
        try:
            with self._tx() as db:
                cur = db.execute(
                    "UPDATE rollouts SET revision = ?, active = ?, phase = ?, state = ?, "
                    "updated_at = ? WHERE id = ? AND revision = ?",
                    (new.revision, int(not new.phase.terminal), new.phase.value,
                     json.dumps(new.to_json()), new.updated_at.isoformat(), new.id,
                     state.revision))
                if cur.rowcount != 1:
                    raise ConflictError(f"rollout {state.name!r} was changed by someone else")
                for e in events:
                    self._insert_event(db, new.id, e)
                if new.phase is Phase.SUCCEEDED:
                    db.execute("INSERT INTO services VALUES (?, ?, ?) ON CONFLICT(service) DO "
                               "UPDATE SET stable_version = excluded.stable_version, "
                               "updated_at = excluded.updated_at",
                               (new.service, new.version, new.updated_at.isoformat()))
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"a rollout named {state.name!r} is already active") from exc
        return new

    def list_active(self) -> list[RolloutState]:
        rows = self._db.execute("SELECT state FROM rollouts WHERE active = 1 ORDER BY name")
        return [self._state(r[0]) for r in rows.fetchall()]

    def history(self, name: str | None = None, *, limit: int = 50) -> list[RolloutState]:
        sql, args = "SELECT state FROM rollouts", tuple[str, ...]()
        if name is not None:
            sql, args = sql + " WHERE name = ?", (name,)
        rows = self._db.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?",
                                (*args, limit)).fetchall()
        return [self._state(r[0]) for r in rows]

    def append_event(self, rollout_id: str, event: Event) -> bool:
        try:
            with self._tx() as db:
                self._insert_event(db, rollout_id, event)
        except sqlite3.IntegrityError:
            return False
        return True

    def _insert_event(self, db: sqlite3.Connection, rollout_id: str, e: Event) -> None:
        if e.key is None:
            last = db.execute("SELECT seq, at, kind, message, data, key FROM events WHERE "
                              "rollout_id = ? ORDER BY seq DESC LIMIT 1", (rollout_id,)).fetchone()
            data = None if last is None else coalesced(self._event(last[1:]), e)
            if data is not None:
                db.execute("UPDATE events SET data = ? WHERE seq = ?", (json.dumps(data), last[0]))
                return
        db.execute("INSERT INTO events (rollout_id, at, kind, message, data, key) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (rollout_id, e.at.isoformat(), e.kind, e.message, json.dumps(dict(e.data)),
                    e.key))

    def _event(self, row: Sequence[Any]) -> Event:
        return decode_event(row[0], row[1], row[2], row[3], row[4],
                            where=f"state store {self._path}")

    def events(self, rollout_id: str, *, limit: int | None = None) -> list[Event]:
        sql = "SELECT seq, at, kind, message, data, key FROM events WHERE rollout_id = ?"
        args: tuple[object, ...] = (rollout_id,)
        if limit is not None and limit > 0:  # only the newest ``limit`` are read
            sql, args = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?)", (rollout_id, limit)
        rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        if limit is not None and limit <= 0:
            rows = rows[-limit:]
        return [self._event(r[1:]) for r in rows]

    def has_event_key(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM events WHERE key = ?", (key,)).fetchone() is not None

    def acquire_lease(self, name: str, owner: LeaseOwner, *, ttl: float, now: datetime) -> None:
        expires = (now + timedelta(seconds=ttl)).isoformat()
        with self._tx() as db:
            row = db.execute("SELECT owner, host, pid, expires_at FROM leases WHERE name = ?",
                             (name,)).fetchone()
            if row is not None and row[0] != owner.id:
                holder = LeaseOwner(id=row[0], host=row[1], pid=row[2])
                if holds(holder, until=datetime.fromisoformat(row[3]), now=now):
                    raise lease_conflict(name, holder, until=row[3])
            db.execute("INSERT INTO leases VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE "
                       "SET owner = excluded.owner, host = excluded.host, pid = excluded.pid, "
                       "expires_at = excluded.expires_at",
                       (name, owner.id, owner.host, owner.pid, expires))

    def claim_rollouts(self, owner: LeaseOwner, *, ttl: float, now: datetime,
                       limit: int) -> list[str]:
        """Claim up to ``limit`` active rollouts whose lease is free, expired or held by a
        dead process. BEGIN IMMEDIATE locks the file, so scan and claims are one step."""
        expires = (now + timedelta(seconds=ttl)).isoformat()
        claimed: list[str] = []
        if limit <= 0:
            return claimed
        with self._tx() as db:
            rows = db.execute(
                "SELECT r.name, l.owner, l.host, l.pid, l.expires_at FROM rollouts r "
                "LEFT JOIN leases l ON l.name = r.name WHERE r.active = 1 "
                "ORDER BY r.created_at, r.rowid").fetchall()
            for name, holder, host, pid, until in rows:
                if len(claimed) >= limit:
                    break
                if holder is not None and datetime.fromisoformat(until) > now and (
                        holder == owner.id
                        or not LeaseOwner(id=holder, host=host, pid=pid).provably_gone()):
                    continue
                db.execute("INSERT INTO leases VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO "
                           "UPDATE SET owner = excluded.owner, host = excluded.host, "
                           "pid = excluded.pid, expires_at = excluded.expires_at",
                           (name, owner.id, owner.host, owner.pid, expires))
                claimed.append(name)
        return claimed

    def release_lease(self, name: str, owner: LeaseOwner) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner.id))

    def last_stable_version(self, service: str) -> str | None:
        row = self._db.execute("SELECT stable_version FROM services WHERE service = ?",
                               (service,)).fetchone()
        return None if row is None else str(row[0])

    def _state(self, text: str) -> RolloutState:
        return decode_state(text, where=f"state store {self._path}")

    def close(self) -> None:
        self._db.close()


def _translated(fn: Callable[Concatenate[SQLiteStore, P], T]) -> Callable[
        Concatenate[SQLiteStore, P], T]:
    """One lock per store (a lease heartbeat thread shares the connection) and sqlite3's
    errors translated at the boundary: no sqlite3 exception leaves this module."""

    @functools.wraps(fn)
    def wrapper(self: SQLiteStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            try:
                return fn(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise failure(self._path, exc) from exc
            except ValueError as exc:  # a stored time or number that is not one
                raise StoreError(f"the state store {self._path} holds a value that cannot be "
                                 f"read ({exc}): corrupt, or not a canary store?") from exc

    return wrapper


for _name in ("create", "get", "save", "list_active", "history", "append_event", "events",
              "has_event_key", "acquire_lease", "claim_rollouts", "release_lease",
              "last_stable_version"):
    setattr(SQLiteStore, _name, _translated(getattr(SQLiteStore, _name)))
