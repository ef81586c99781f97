"""What only the PostgreSQL store has to get right: the SQLite store's schema in another
database, a connection that survives a server restart, and psycopg's errors translated into
canary's tree (with the URL's password never shown)."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest

from canary.errors import CanaryError, InputError, TemporaryError
from canary.model import Event
from canary.store.base import SCHEMA_VERSION, StateStore
from canary.store.postgres import PostgresStore
from canary.store.registry import open_store
from canary.store.sqlite import SQLiteStore
from lab.proc import Server, free_port, wait_until
from tests.rollout.helpers import T0, new_state

pytestmark = pytest.mark.servers


def columns_pg(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                            "WHERE table_schema = current_schema()").fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def test_schema_is_the_sqlite_one(postgres_url: str, tmp_path: object) -> None:
    PostgresStore(postgres_url).close()
    path = f"{tmp_path}/state.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name NOT LIKE 'sqlite_%'")]
    expected = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in tables}
    db.close()
    expected["rollouts"].add("seq")  # SQLite's implicit rowid, made explicit
    assert columns_pg(postgres_url) == expected
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
            str(SCHEMA_VERSION),)
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = "
                             "'rollouts_one_active' AND schemaname = current_schema()"
                             ).fetchone()
    assert index is not None and "UNIQUE" in index[0] and "WHERE active" in index[0]


def test_open_store_selects_postgres_by_url(postgres_url: str) -> None:
    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore) and isinstance(store, StateStore)
    store.close()


def test_controllers_starting_together_create_the_schema_once(postgres_url: str) -> None:
    with ThreadPoolExecutor(6) as pool:
        opened = list(pool.map(lambda _: PostgresStore(postgres_url), range(6)))
    opened[0].create(new_state(revision=0))
    assert [s.get("checkout").id for s in opened] == ["r1"] * 6
    for s in opened:
        s.close()


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(InputError, match="newer than this canary"):
        PostgresStore(postgres_url)


def test_a_bad_url_is_an_input_error() -> None:
    with pytest.raises(InputError, match="--store"):
        PostgresStore("postgresql://127.0.0.1/canary?no_such_option=1")


def test_an_unreachable_server_is_temporary_and_the_password_stays_secret() -> None:
    with pytest.raises(TemporaryError) as caught:
        PostgresStore(f"postgresql://canary:s3cret@127.0.0.1:{free_port()}/canary")
    assert "cannot reach" in str(caught.value) and "s3cret" not in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_text_postgresql_cannot_hold_is_handled(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    s = store.create(new_state(revision=0))
    assert store.append_event(s.id, Event(at=T0, kind="gate", message="out\x00put"))
    assert store.events(s.id)[0].message == "out\ufffdput"  # kept, NUL made visible
    with pytest.raises(InputError, match="refused a value"):
        store.create(new_state(id="r2", name="bad\x00name", revision=0))
    assert store.get("checkout") == s  # the connection is still good
    store.close()


@contextmanager
def server_down(server: Server) -> Iterator[None]:
    """Fast shutdown by PID, keeping the data; the same server back on the same port after."""
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGINT)
    server.proc.wait(10)
    try:
        yield
    finally:
        server.start(user="postgres" if os.geteuid() == 0 else None)
        dsn = str(server.info["dsn"])

        def accepts() -> bool:
            with psycopg.connect(dsn, connect_timeout=2):
                return True

        wait_until(accepts, timeout=30, what="postgres to come back")


def test_a_server_restart_is_survived(postgres_server: Server, postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    s = store.create(new_state(revision=0))
    with server_down(postgres_server):
        with pytest.raises(TemporaryError) as caught:
            store.get("checkout")
        assert not isinstance(caught.value.__cause__, CanaryError)
    # the old connection is dead; the store finds out, reconnects once, and carries on
    assert store.get("checkout") == s
    store.save(dataclasses.replace(s, desired_weight=5))
    with server_down(postgres_server):
        pass  # down and up again while the store sits idle
    assert store.get("checkout").desired_weight == 5
    store.close()
