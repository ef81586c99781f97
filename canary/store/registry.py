"""Which store a URL names, and how it is opened: SQLite (built in) or PostgreSQL (the
canary[postgres] extra). Kept apart from base.py so the port does not import its adapters.
"""

from __future__ import annotations

from canary.errors import InputError
from canary.store.base import StateStore


def open_store(url: str) -> StateStore:
    """sqlite:///path (default) or postgresql://...; anything else is an input error."""
    if url.startswith("sqlite:///") or url == "sqlite://":
        from canary.store.sqlite import SQLiteStore

        path = url.removeprefix("sqlite:///") or ":memory:"
        try:
            return SQLiteStore(path)
        except OSError as exc:  # e.g. .canary/ cannot be created in a read-only directory
            raise InputError(f"cannot create the state store {path}: {exc.strerror}; pass "
                             "--store or set CANARY_STORE to a writable place",
                             field="--store") from exc
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from canary.store.postgres import PostgresStore
        except ModuleNotFoundError as exc:  # psycopg is the canary[postgres] extra
            if (exc.name or "").partition(".")[0] != "psycopg":
                raise
            raise InputError("the PostgreSQL store needs psycopg, which is not installed: "
                             "pip install 'canary[postgres]'", field="--store") from exc
        store: StateStore = PostgresStore(url)
        return store
    raise InputError(f"unknown store URL {url!r}: expected sqlite:///PATH or postgresql://...",
                     field="--store")
