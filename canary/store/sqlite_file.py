"""Opening the embedded store's SQLite file: private, in WAL mode, its schema in place, or
read-only when we may not write it; and sqlite3's errors in canary's tree.

The file holds every message and hook output of every rollout, so it is private: created
0600 in a directory created 0700 (SQLite gives its -wal and -shm files the database's mode);
a looser file, or a looser default ``.canary/`` directory, is tightened with a warning.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from canary.errors import CanaryError, InputError, TemporaryError
from canary.store.base import SCHEMA_VERSION, StoreError
from canary.store.codec import check_schema

# The store's own logger: its warnings keep the name they have always been logged under.
log = logging.getLogger("canary.store.sqlite")


def open_database(path: str, *, schema: str) -> sqlite3.Connection:
    """A connection to ``path`` with ``schema`` (statements separated by ``;``) created and
    the stored schema version checked; read-only if the database exists but we may not
    write it. InputError if it cannot be opened at all."""
    if path != ":memory:":
        try:
            _make_private(path)
        except OSError as exc:
            # An existing store we may not write (read-only file, directory or file
            # system) is still opened, read-only, below: status and history read it.
            if not os.path.exists(path):
                raise InputError(f"cannot open the state store {path}: {exc.strerror}",
                                 field="--store") from exc
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 30000")
        if path != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
        with transaction(db):
            for stmt in schema.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            else:
                check_schema(row[0], store=path)
    except sqlite3.OperationalError as exc:
        if not (is_read_only(exc) and os.path.exists(path)):
            raise InputError(f"cannot open the state store {path}: {exc}",
                             field="--store") from exc
        return _open_read_only(path)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open the state store {path}: {exc}",
                         field="--store") from exc
    return db


def _open_read_only(path: str) -> sqlite3.Connection:
    """A database we may not write (file or directory read-only): status and history
    still read it; a write fails with StoreError saying so. A WAL database whose -shm
    file cannot be created is opened immutable (nobody can be writing it then)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    last: sqlite3.Error | None = None
    for mode in ("?mode=ro", "?immutable=1"):
        try:
            db = sqlite3.connect(uri + mode, uri=True, timeout=30, isolation_level=None,
                                 check_same_thread=False)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.Error as exc:
            last = exc
            continue
        check_schema(row[0] if row else SCHEMA_VERSION, store=path)
        return db
    raise InputError(f"cannot open the state store {path} (read-only): {last}",
                     field="--store")


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE``: takes the write lock at once, so writers in other processes
    queue (busy_timeout) instead of failing half-way."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    else:
        db.execute("COMMIT")


def failure(path: str, exc: sqlite3.Error) -> CanaryError:
    """sqlite3's errors, in the error tree: busy is temporary, the rest needs a human."""
    text = str(exc) or type(exc).__name__
    if "locked" in text or "busy" in text:
        return TemporaryError(f"the state store {path} is busy: {text}")
    if is_read_only(exc):
        return StoreError(f"the state store {path} is read-only ({text}): status and "
                          "history can read it, changing a rollout needs write access")
    return StoreError(f"the state store {path} failed: {text} (corrupt, or not a "
                      "canary store?)")


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


def is_read_only(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "readonly" in text or "read-only" in text or "unable to open database file" in text
