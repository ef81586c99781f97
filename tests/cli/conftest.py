"""A SQLite store with rollouts in it, written the way a controller writes them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canary.state import RolloutState
from canary.store.sqlite import SQLiteStore


def rollout(name: str, *, version: str = "2.0.0", age: float = 60,
            **changes: object) -> RolloutState:
    t = datetime.now(UTC) - timedelta(seconds=age)
    base = RolloutState(id=f"{name}-{version}", name=name, service=name, version=version,
                        stable_version="1.0.0", document="", source="rollout.yaml",
                        created_at=t, updated_at=t)
    return dataclasses.replace(base, **changes)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, SQLiteStore]]:
    path = tmp_path / "state.db"
    store = SQLiteStore(str(path))
    yield f"sqlite:///{path}", store
    store.close()
