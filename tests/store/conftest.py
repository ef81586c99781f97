"""The store contract suite runs on every StateStore implementation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from canary.store.base import StateStore
from canary.store.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[StateStore]:
    s = SQLiteStore(f"{tmp_path}/state.db")
    yield s
    s.close()
