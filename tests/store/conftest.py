"""The store contract suite runs on every StateStore implementation.

PostgreSQL is the session's real server (tests/conftest.py); each test gets a fresh, empty
schema, so tests stay independent and several stores in one test can share that schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from canary.store.base import StateStore
from canary.store.sqlite import SQLiteStore


@pytest.fixture
def postgres_url(postgres_dsn: str) -> str:
    """A store URL on a fresh, empty schema of the session's PostgreSQL (tests/conftest.py)."""
    return postgres_dsn


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
