"""The SQLite store holds every message and hook output: only its owner may read it."""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from canary.model import Event
from canary.rollout.wiring import DEFAULT_STORE
from canary.state import RolloutState
from canary.store.registry import open_store
from canary.store.sqlite import SQLiteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_something(store: SQLiteStore) -> None:
    now = datetime.now(UTC)
    state = RolloutState(id="r1", name="checkout", service="checkout", version="2",
                         stable_version="1", document="", source="test", created_at=now,
                         updated_at=now)
    store.create(state, events=[Event(at=now, kind="created", message="created")])


@pytest.fixture(autouse=True)
def loose_umask() -> object:
    old = os.umask(0o022)  # the usual default: files 0644, directories 0755
    yield
    os.umask(old)


def test_the_default_store_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(DEFAULT_STORE)
    assert isinstance(store, SQLiteStore)
    write_something(store)
    assert mode(tmp_path / ".canary") == 0o700
    files = sorted((tmp_path / ".canary").iterdir())
    assert [f.name for f in files][:2] == ["state.db", "state.db-shm"]
    assert all(mode(f) == 0o600 for f in files), {f.name: oct(mode(f)) for f in files}
    store.close()


def test_a_new_directory_is_0700_and_the_file_0600(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "deep" / "state.db"))
    write_something(store)
    assert mode(tmp_path / "deep") == 0o700
    assert mode(tmp_path / "deep" / "state.db") == 0o600
    assert mode(tmp_path / "deep" / "state.db-wal") == 0o600
    store.close()


def test_looser_existing_files_and_default_directory_are_tightened_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / ".canary"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    db = directory / "state.db"
    SQLiteStore(str(db)).close()
    os.chmod(db, 0o644)
    os.chmod(directory, 0o755)
    with caplog.at_level(logging.WARNING, logger="canary.store.sqlite"):
        SQLiteStore(str(db)).close()
    assert mode(db) == 0o600 and mode(directory) == 0o700
    assert "tightened" in caplog.text and str(db) in caplog.text


def test_a_directory_the_user_chose_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    SQLiteStore(str(shared / "state.db")).close()
    assert mode(shared) == 0o755
    assert mode(shared / "state.db") == 0o600
