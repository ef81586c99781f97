"""The SQLite file under faults, through the real `canary` command: a read-only database
is still readable by status and history, an unwritable directory, corrupt pages, a foreign
file and bad timestamps are one line and exit 2 or 4, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from canary.model import Event
from canary.store.sqlite import SQLiteStore
from tests.rollout.helpers import T0, at, new_state

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def place() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="canary-faults-"))
    yield d
    thaw(d)
    shutil.rmtree(d)


def freeze(*paths: Path) -> None:
    """Make ``paths`` unwritable, for root too (the immutable flag; plain modes for others)."""
    for p in paths:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(p)], check=True)
        else:
            p.chmod(0o555 if p.is_dir() else 0o444)


def thaw(d: Path) -> None:
    for p in [d, *d.rglob("*")]:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(p)], check=False, capture_output=True)
        p.chmod(0o755 if p.is_dir() else 0o644)


def canary(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CANARY_STORE", None)
    return subprocess.run([sys.executable, "-m", "canary", *args], capture_output=True,
                          text=True, cwd=str(cwd), env=env, timeout=60, check=False)


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def make_store(path: Path, events: int = 3) -> None:
    s = SQLiteStore(str(path))
    r = s.create(new_state(revision=0, created_at=T0, updated_at=T0))
    for i in range(events):
        s.append_event(r.id, Event(at=at(i), kind="tick", message=f"#{i}"))
    s.close()


def test_read_only_database_can_still_be_read_by_status_and_history(place: Path) -> None:
    db = place / "state.db"
    make_store(db)
    freeze(*place.iterdir(), place)
    url = f"sqlite:///{db}"
    status = canary("status", "checkout", "--store", url, cwd=place)
    assert status.returncode == 0, status.stderr
    assert "checkout" in status.stdout
    history = canary("history", "checkout", "--store", url, cwd=place)
    assert history.returncode == 0, history.stderr
    abort = canary("abort", "checkout", "--store", url, cwd=place)
    assert abort.returncode == 4 and "read-only" in one_line(abort)


def test_unwritable_working_directory_is_one_line_exit_2(place: Path) -> None:
    freeze(place)  # the default store is .canary/state.db under the working directory
    res = canary("status", "checkout", cwd=place)
    assert res.returncode == 2 and "--store" in one_line(res)


def test_corrupt_pages_are_one_line(place: Path) -> None:
    db = place / "state.db"
    make_store(db, events=400)
    with sqlite_checkpointed(db):
        data = bytearray(db.read_bytes())
        assert len(data) > 8192
        data[4096:len(data) - 100] = os.urandom(len(data) - 4196)  # every page but the first
        db.write_bytes(bytes(data))
    res = canary("status", "checkout", "--store", f"sqlite:///{db}", cwd=place)
    assert res.returncode in (2, 4)
    one_line(res)


def test_a_file_that_is_not_a_database_is_one_line_exit_2(place: Path) -> None:
    db = place / "state.db"
    db.write_text("this is a README, not a database\n" * 200)
    db.chmod(0o600)  # private already: no permission warning beside the one line
    res = canary("status", "checkout", "--store", f"sqlite:///{db}", cwd=place)
    assert res.returncode == 2 and "cannot open the state store" in one_line(res)


def test_bad_event_timestamp_and_schema_are_one_line_exit_4(place: Path) -> None:
    db = place / "state.db"
    make_store(db)
    s = SQLiteStore(str(db))
    s._db.execute("UPDATE events SET at = 'yesterday-ish'")
    s.close()
    res = canary("status", "checkout", "--store", f"sqlite:///{db}", cwd=place)
    assert res.returncode == 4 and "event" in one_line(res)
    s = SQLiteStore(str(db))
    s._db.execute("UPDATE meta SET value = 'v1' WHERE key = 'schema'")
    s.close()
    res = canary("status", "checkout", "--store", f"sqlite:///{db}", cwd=place)
    assert res.returncode == 4 and "not a number" in one_line(res)


class sqlite_checkpointed:
    """Fold the WAL into the main file first, so the bytes we damage are the data."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def __enter__(self) -> None:
        import sqlite3

        con = sqlite3.connect(self.db)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode = DELETE")
        con.close()

    def __exit__(self, *exc: object) -> None:
        return None


CHILD = """\
import sys, time
from datetime import UTC, datetime
from canary.store.base import LeaseOwner
from canary.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
owner = LeaseOwner.here()
store.acquire_lease("checkout", owner, ttl=3600, now=datetime.now(UTC))
print(owner.pid, flush=True)
time.sleep(120)
"""


def test_a_live_deploy_in_another_pid_namespace_keeps_its_lease(place: Path) -> None:
    """A container on host networking: same hostname, its own PID namespace, where its pid
    (31001) is no process of ours. Its lease is not taken while it lives, nor at once after
    it died (that is not provable from here): only when the lease expires."""
    from datetime import UTC, datetime, timedelta

    from canary.errors import ConflictError
    from canary.store.lease import LeaseOwner

    db = place / "state.db"
    SQLiteStore(str(db)).close()
    # the next pid in the new namespace is 31001; python runs as a child, not exec'd as 1
    script = f'echo 31000 > /proc/sys/kernel/ns_last_pid; "{sys.executable}" -c "$0" "{db}"'

    try:
        child = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                                  "sh", "-c", script, CHILD], stdout=subprocess.PIPE,
                                 text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    except OSError as exc:
        pytest.skip(f"cannot create a PID namespace here: {exc}")
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if not line:
            pytest.skip("unshare --pid is not permitted here")
        inner = int(line)
        assert not os.path.exists(f"/proc/{inner}"), "pid taken on this side too: rerun"
        store = SQLiteStore(str(db))
        with pytest.raises(ConflictError, match="another controller"):
            store.acquire_lease("checkout", LeaseOwner.here(), ttl=30, now=datetime.now(UTC))
        child.kill()
        child.wait()
        with pytest.raises(ConflictError, match="another controller"):
            store.acquire_lease("checkout", LeaseOwner.here(), ttl=30, now=datetime.now(UTC))
        later = datetime.now(UTC) + timedelta(hours=1, seconds=1)
        store.acquire_lease("checkout", LeaseOwner.here(), ttl=30, now=later)  # expired
        store.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
