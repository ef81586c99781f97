"""The shared store: one PostgreSQL database used at once by several controllers, ``canary
serve`` replicas and operator commands.

Same logical schema and the same semantics as the SQLite store (one contract suite runs on
both); PostgreSQL's row locks do the work SQLite's database-wide write lock does there. A save
is a compare-and-set in one transaction with its events. A lease is judged under ``SELECT ...
FOR UPDATE`` on its row, so two controllers racing for a rollout never both win.
``claim_rollouts`` hands free rollouts to serve replicas with ``FOR UPDATE SKIP LOCKED``, so
replicas split the work instead of queueing behind each other.

One connection per store, autocommit off, each operation one explicit transaction (reads too,
so the connection never idles inside a transaction): pg_session.py, which also replaces a
dead connection once and translates psycopg's errors (none leaves these two modules).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from canary.errors import ConflictError, NotFoundError, TemporaryError
from canary.model import Event, Phase
from canary.state import RolloutState
from canary.store.base import SCHEMA_VERSION
from canary.store.codec import check_schema, coalesced, decode_event, decode_state
from canary.store.lease import LeaseOwner, holds, lease_conflict
from canary.store.pg_session import Cursor, Session

# state and events.data hold JSON as TEXT, not JSONB: JSONB refuses NaN (a measured value can
# be one) and \u0000 (a gate's output can hold one), and the round trip must be exact. Times
# are TIMESTAMPTZ so ordering and expiry compare instants, whatever the database's collation.
# seq breaks ties between rollouts created at the same instant, as rowid does in SQLite.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS rollouts (
        seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE, id TEXT PRIMARY KEY,
        name TEXT NOT NULL, active BOOLEAN NOT NULL, revision INTEGER NOT NULL,
        phase TEXT NOT NULL, state TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_active ON rollouts (name) WHERE active",
    "CREATE INDEX IF NOT EXISTS rollouts_name ON rollouts (name, created_at)",
    """CREATE TABLE IF NOT EXISTS events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, rollout_id TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
        data TEXT NOT NULL, key TEXT UNIQUE)""",
    "CREATE INDEX IF NOT EXISTS events_rollout ON events (rollout_id, seq)",
    """CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS services (
        service TEXT PRIMARY KEY, stable_version TEXT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL)""",
)
# Controllers starting together would race on CREATE TABLE IF NOT EXISTS (it is not atomic
# in PostgreSQL); one transaction-scoped advisory lock makes them take turns.
_SCHEMA_LOCK = 0x63616E617279

_UPSERT_LEASE = ("INSERT INTO leases AS l (name, owner, host, pid, expires_at) "
                 "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                 "owner = excluded.owner, host = excluded.host, pid = excluded.pid, "
                 "expires_at = excluded.expires_at")
# Candidates for claim_rollouts: active, and the lease free, expired, or held from this host
# (whose process may be gone: judged in Python). Locking the rollout row, not the lease row
# (which may not exist yet), is what lets a second replica skip to other rollouts.
_CANDIDATES = """
SELECT r.name, l.owner, l.host, l.pid, l.expires_at <= %(now)s
FROM rollouts r LEFT JOIN leases l ON l.name = r.name
WHERE r.active AND r.name <> ALL(%(seen)s::text[])
  AND (l.name IS NULL OR l.expires_at <= %(now)s OR (l.host = %(host)s AND l.owner <> %(me)s))
ORDER BY r.created_at, r.seq
LIMIT %(n)s
FOR NO KEY UPDATE OF r SKIP LOCKED"""


class PostgresStore:
    """The StateStore for ``postgresql://`` URLs, plus ``claim_rollouts`` for serve."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        self._db = Session(url, connect_timeout=connect_timeout)
        try:
            self._db.run(self._init_schema)
        except BaseException:
            self._db.close()
            raise

    def _init_schema(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for stmt in _SCHEMA:
            cur.execute(stmt)
        row = cur.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            cur.execute("INSERT INTO meta VALUES ('schema', %s)", (str(SCHEMA_VERSION),))
        else:
            check_schema(row[0], store=self._db.where)

    def close(self) -> None:
        self._db.close()

    # -- rollouts and events ---------------------------------------------------------------

    def create(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        new = dataclasses.replace(state, revision=1)

        def work(cur: Cursor) -> None:
            cur.execute("INSERT INTO rollouts (id, name, active, revision, phase, state, "
                        "created_at, updated_at) VALUES (%s, %s, %s, 1, %s, %s, %s, %s)",
                        (new.id, new.name, not new.phase.terminal, new.phase.value,
                         json.dumps(new.to_json()), _utc(new.created_at),
                         _utc(new.updated_at)))
            _insert_events(cur, new.id, events)

        self._db.run(work, conflict=f"a rollout named {state.name!r} is already active")
        return new

    def get(self, name: str) -> RolloutState:
        row = self._db.run(lambda cur: cur.execute(
            "SELECT state FROM rollouts WHERE name = %s ORDER BY created_at DESC, seq DESC "
            "LIMIT 1", (name,)).fetchone())
        if row is None:
            raise NotFoundError(f"no rollout named {name!r}")
        return decode_state(row[0], where=f"state store {self._db.where}")

    def save(self, state: RolloutState, *, events: Sequence[Event] = ()) -> RolloutState:
        new = dataclasses.replace(state, revision=state.revision + 1)

        def work(cur: Cursor) -> None:
            # Under READ COMMITTED a concurrent save of the same row waits for ours, then
            # re-checks the revision against our committed row and matches nothing.
            cur.execute("UPDATE rollouts SET revision = %s, active = %s, phase = %s, "
                        "state = %s, updated_at = %s WHERE id = %s AND revision = %s",
                        (new.revision, not new.phase.terminal, new.phase.value,
                         json.dumps(new.to_json()), _utc(new.updated_at), new.id,
                         state.revision))
            if cur.rowcount != 1:
                raise ConflictError(f"rollout {state.name!r} was changed by someone else")
            _insert_events(cur, new.id, events)
            if new.phase is Phase.SUCCEEDED:
                cur.execute("INSERT INTO services VALUES (%s, %s, %s) ON CONFLICT (service) "
                            "DO UPDATE SET stable_version = excluded.stable_version, "
                            "updated_at = excluded.updated_at",
                            (new.service, new.version, _utc(new.updated_at)))

        self._db.run(work, conflict=f"a rollout named {state.name!r} is already active")
        return new

    def list_active(self) -> list[RolloutState]:
        # COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        rows = self._db.run(lambda cur: cur.execute(
            'SELECT state FROM rollouts WHERE active ORDER BY name COLLATE "C"').fetchall())
        return [decode_state(r[0], where=f"state store {self._db.where}") for r in rows]

    def history(self, name: str | None = None, *, limit: int = 50) -> list[RolloutState]:
        sql, args = "SELECT state FROM rollouts", tuple[object, ...]()
        if name is not None:
            sql, args = sql + " WHERE name = %s", (name,)
        bound = limit if limit >= 0 else None  # SQLite reads a negative LIMIT as none
        rows = self._db.run(lambda cur: cur.execute(
            sql + " ORDER BY created_at DESC, seq DESC LIMIT %s", (*args, bound)).fetchall())
        return [decode_state(r[0], where=f"state store {self._db.where}") for r in rows]

    def append_event(self, rollout_id: str, event: Event) -> bool:
        def work(cur: Cursor) -> bool:
            if _coalesce(cur, rollout_id, event):
                return True
            cur.execute(_INSERT_EVENT + " ON CONFLICT (key) DO NOTHING",
                        _event_row(rollout_id, event))
            return cur.rowcount == 1

        return self._db.run(work)

    def events(self, rollout_id: str, *, limit: int | None = None) -> list[Event]:
        sql = "SELECT seq, at, kind, message, data, key FROM events WHERE rollout_id = %s"
        if limit is not None and limit > 0:  # the newest ``limit``, oldest first
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT %s) AS newest"
        args = (rollout_id,) if limit is None or limit <= 0 else (rollout_id, limit)
        rows = self._db.run(lambda cur: cur.execute(sql + " ORDER BY seq", args).fetchall())
        if limit is not None and limit <= 0:
            rows = rows[-limit:]  # the SQLite store's slice, quirks included
        where = f"state store {self._db.where}"
        return [decode_event(r[1].astimezone(UTC), r[2], r[3], r[4], r[5], where=where)
                for r in rows]

    def has_event_key(self, key: str) -> bool:
        row = self._db.run(lambda cur: cur.execute("SELECT 1 FROM events WHERE key = %s",
                                                (key,)).fetchone())
        return row is not None

    def last_stable_version(self, service: str) -> str | None:
        row = self._db.run(lambda cur: cur.execute(
            "SELECT stable_version FROM services WHERE service = %s", (service,)).fetchone())
        return None if row is None else str(row[0])

    # -- leases ----------------------------------------------------------------------------

    def acquire_lease(self, name: str, owner: LeaseOwner, *, ttl: float, now: datetime) -> None:
        now = _utc(now)
        mine = (name, owner.id, owner.host, owner.pid, now + timedelta(seconds=ttl))

        def work(cur: Cursor) -> None:
            # Lock the row, or create it; a row released or inserted between the two
            # statements sends us round again (bounded: each turn someone else made progress).
            for _ in range(5):
                row = cur.execute("SELECT owner, host, pid, expires_at FROM leases "
                                  "WHERE name = %s FOR UPDATE", (name,)).fetchone()
                if row is None:
                    cur.execute("INSERT INTO leases VALUES (%s, %s, %s, %s, %s) "
                                "ON CONFLICT (name) DO NOTHING", mine)
                    if cur.rowcount == 1:
                        return
                    continue
                holder = LeaseOwner(id=row[0], host=row[1], pid=row[2])
                if row[0] != owner.id and holds(holder, until=row[3], now=now):
                    raise lease_conflict(name, holder, until=row[3].astimezone(UTC).isoformat())
                cur.execute(_UPSERT_LEASE, mine)
                return
            raise TemporaryError(f"the lease on rollout {name!r} kept changing; try again")

        self._db.run(work)

    def release_lease(self, name: str, owner: LeaseOwner) -> None:
        self._db.run(lambda cur: cur.execute("DELETE FROM leases WHERE name = %s AND owner = %s",
                                          (name, owner.id)))

    def claim_rollouts(self, owner: LeaseOwner, *, ttl: float, now: datetime,
                       limit: int) -> list[str]:
        """Take the lease on up to ``limit`` active rollouts whose lease is free, expired or
        held by a provably gone process, oldest first; returns their names. Rollouts this
        owner already holds a live lease on are not returned (the runner renews those)."""
        now = _utc(now)
        expires = now + timedelta(seconds=ttl)

        def work(cur: Cursor) -> list[str]:
            claimed: list[str] = []
            passed: list[str] = []  # looked at and left: held live, or taken since the scan
            while len(claimed) < limit:
                rows = cur.execute(_CANDIDATES, {
                    "now": now, "host": owner.host, "me": owner.id, "seen": claimed + passed,
                    "n": limit - len(claimed)}).fetchall()
                if not rows:
                    break
                for name, holder, host, pid, expired in rows:
                    dead = holder is not None and not expired and LeaseOwner(
                        id=holder, host=host, pid=pid).provably_gone()
                    if holder is not None and not expired and not dead:
                        passed.append(name)
                        continue
                    # The lease row is the arbiter: a deploy racing us through acquire_lease
                    # may have taken it since our scan; then the WHERE fails and we pass.
                    cur.execute(_UPSERT_LEASE + " WHERE l.expires_at <= %s OR l.owner = %s",
                                (name, owner.id, owner.host, owner.pid, expires, now,
                                 holder if dead else None))
                    (claimed if cur.rowcount == 1 else passed).append(name)
            return claimed

        return self._db.run(work) if limit > 0 else []


_INSERT_EVENT = ("INSERT INTO events (rollout_id, at, kind, message, data, key) "
                 "VALUES (%s, %s, %s, %s, %s, %s)")


def _insert_events(cur: Cursor, rollout_id: str, events: Sequence[Event]) -> None:
    for e in events:
        if not _coalesce(cur, rollout_id, e):
            cur.execute(_INSERT_EVENT, _event_row(rollout_id, e))


def _coalesce(cur: Cursor, rollout_id: str, e: Event) -> bool:
    """Fold ``e`` into the rollout's latest event when it only repeats it (see
    ``canary.store.base.coalesced``); the row is locked so two writers count both."""
    if e.key is not None:
        return False
    last = cur.execute("SELECT seq, at, kind, message, data, key FROM events WHERE "
                       "rollout_id = %s ORDER BY seq DESC LIMIT 1 FOR UPDATE",
                       (rollout_id,)).fetchone()
    if last is None:
        return False
    data = coalesced(decode_event(last[1], last[2], last[3], last[4], last[5],
                                  where="state store"), e)
    if data is None:
        return False
    cur.execute("UPDATE events SET data = %s WHERE seq = %s", (json.dumps(data), last[0]))
    return True


def _event_row(rollout_id: str, e: Event) -> tuple[object, ...]:
    # PostgreSQL text cannot hold NUL; a message quoting a command's output might. The data
    # is JSON, where json.dumps already escapes it.
    return (rollout_id, _utc(e.at), _nul_free(e.kind), _nul_free(e.message),
            json.dumps(dict(e.data)), e.key)


def _nul_free(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def _utc(moment: datetime) -> datetime:
    """Naive times are UTC (the clock is UTC); never the database session's zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
