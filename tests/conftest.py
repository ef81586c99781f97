"""Shared test configuration: servers more than one test folder needs.

A real PostgreSQL: one server per session (started on first use), one schema per test
(a schema takes milliseconds to create; a database about 0.3 s).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from examples.lab import postgres
from examples.lab.proc import Server

_names = itertools.count(1)


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
def postgres_dsn(postgres_server: Server) -> Iterator[str]:
    """A DSN whose search_path is a fresh, empty schema; dropped afterwards."""
    name = f"gate_{next(_names)}"
    dsn = str(postgres_server.info["dsn"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield f"{dsn}?options=-csearch_path%3D{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
