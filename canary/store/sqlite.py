"""The embedded store: one SQLite file, safe for a deploy and operator commands at once.

WAL mode and ``BEGIN IMMEDIATE`` serialise writers across processes; every state write is a
compare-and-set on the revision counter, in the same transaction as its events.

The file holds every message and hook output of every rollout, so it is private: created
0600 in a directory created 0700 (SQLite gives its -wal and -shm files the database's mode);
a looser file, or a looser default ``.canary/`` directory, is tightened with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from canary.errors import ConflictError, InputError, NotFoundError
from canary.model import Event, Phase
from canary.rollout.state import RolloutState
from canary.store.base import SCHEMA_VERSION, LeaseOwner

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


log = logging.getLogger(__name__)


def _tighten(path: str, mode: int) -> None:
    """chmod ``path`` to ``mode`` if group or others may read it; warn about what was done,
    or that it could not be (another user's file: only its owner can fix it)."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
        if current & 0o077 == 0:
            return
        os.chmod(path, mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("%s is readable by others (mode %o) and cannot be tightened: %s",
                    path, current, exc.strerror)
        return
    log.warning("%s was readable by others (mode %o): tightened to %o", path, current, mode)


def _make_private(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
    elif os.path.basename(directory) == ".canary":
        # Only canary's own default directory: a directory named by the user (a project
        # folder, /tmp) may be meant to be shared.
        _tighten(directory, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        _tighten(name, 0o600)


class SQLiteStore:
    def __init__(self, path: str) -> None:
        if path != ":memory:":
            try:
                _make_private(path)
            except OSError as exc:
                raise InputError(f"cannot open the state store {path}: {exc.strerror}",
                                 field="--store") from exc
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
            with self._tx() as db:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise InputError(f"store {path} has schema {row[0]}, newer than this "
                                     f"canary understands ({SCHEMA_VERSION}): upgrade canary")
        except sqlite3.Error as exc:
            raise InputError(f"cannot open the state store {path}: {exc}",
                             field="--store") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def create(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        new = state.replace(revision=1)
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
        return RolloutState.from_json(json.loads(row[0]))

    def save(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        new = state.replace(revision=state.revision + 1)
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
        return [RolloutState.from_json(json.loads(r[0])) for r in rows.fetchall()]

    def history(self, name: str | None = None, *, limit: int = 50) -> list[RolloutState]:
        sql, args = "SELECT state FROM rollouts", tuple[str, ...]()
        if name is not None:
            sql, args = sql + " WHERE name = ?", (name,)
        rows = self._db.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?",
                                (*args, limit)).fetchall()
        return [RolloutState.from_json(json.loads(r[0])) for r in rows]

    def append_event(self, rollout_id: str, event: Event) -> bool:
        try:
            with self._tx() as db:
                self._insert_event(db, rollout_id, event)
        except sqlite3.IntegrityError:
            return False
        return True

    @staticmethod
    def _insert_event(db: sqlite3.Connection, rollout_id: str, e: Event) -> None:
        db.execute("INSERT INTO events (rollout_id, at, kind, message, data, key) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (rollout_id, e.at.isoformat(), e.kind, e.message, json.dumps(dict(e.data)),
                    e.key))

    def events(self, rollout_id: str, *, limit: int | None = None) -> list[Event]:
        sql = "SELECT at, kind, message, data, key FROM events WHERE rollout_id = ? ORDER BY seq"
        rows = self._db.execute(sql, (rollout_id,)).fetchall()
        if limit is not None:
            rows = rows[-limit:]
        return [Event(at=datetime.fromisoformat(r[0]), kind=r[1], message=r[2],
                      data=json.loads(r[3]), key=r[4]) for r in rows]

    def has_event_key(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM events WHERE key = ?", (key,)).fetchone() is not None

    def acquire_lease(self, name: str, owner: LeaseOwner, *, ttl: float, now: datetime) -> None:
        expires = (now + timedelta(seconds=ttl)).isoformat()
        with self._tx() as db:
            row = db.execute("SELECT owner, host, pid, expires_at FROM leases WHERE name = ?",
                             (name,)).fetchone()
            if row is not None and row[0] != owner.id:
                holder = LeaseOwner(id=row[0], host=row[1], pid=row[2])
                live = datetime.fromisoformat(row[3]) > now and not holder.provably_gone()
                if live:
                    raise ConflictError(
                        f"rollout {name!r} is being driven by another controller (pid "
                        f"{holder.pid} on {holder.host}, lease until {row[3]})")
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

    def close(self) -> None:
        self._db.close()
