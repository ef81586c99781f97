"""The store contract suite runs on every StateStore implementation.

PostgreSQL is a real server, started once per session on a free loopback port and stopped by
PID; each test gets a fresh, empty schema (milliseconds; a database takes about 0.3 s), so
tests stay independent and several stores in one test can share that schema.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from canary.store.base import StateStore
from canary.store.sqlite import SQLiteStore
from examples.lab import postgres
from examples.lab.proc import Server

_schemas = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    if not postgres.available():
        pytest.skip(f"PostgreSQL binaries not found in {postgres.PG_BIN}")
    server = postgres.start_postgres()
    try:
        yield server
    finally:
        postgres.stop_postgres(server)


@pytest.fixture
def postgres_url(postgres_server: Server) -> Iterator[str]:
    """A store URL whose search_path is a fresh, empty schema; dropped afterwards."""
    name = f"store_{next(_schemas)}"
    dsn = str(postgres_server.info["dsn"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield f"{dsn}?options=-csearch_path%3D{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[StateStore]:
    s: StateStore
    if request.param == "sqlite":
        s = SQLiteStore(f"{tmp_path}/state.db")
    else:
        from canary.store.postgres import PostgresStore

        s = PostgresStore(request.getfixturevalue("postgres_url"))
    yield s
    s.close()
