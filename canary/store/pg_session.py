"""One PostgreSQL connection for a store: one transaction per call, a dead connection
replaced once (nothing of that transaction was committed), a failure while committing never
retried (the commit may have landed), psycopg's errors translated into canary's and the
password never quoted in them: psycopg's exceptions never leave this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from canary.errors import CanaryError, ConflictError, InputError, TemporaryError
from canary.store.base import StoreError

T = TypeVar("T")
Cursor = psycopg.Cursor[TupleRow]


class Session:
    """One connection, one transaction per call, psycopg's errors translated at the edge."""

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        self._url = url
        self._secret = _password(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise InputError(f"invalid PostgreSQL URL: {self._redact(exc)}",
                             field="--store") from exc
        self._secret = str(params.get("password") or self._secret)
        self.where = (f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
                      f"/{params.get('dbname', '')}")
        self._extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            self._extra["connect_timeout"] = max(1, round(connect_timeout))
        if "application_name" not in params:
            self._extra["application_name"] = "canary"
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[TupleRow] | None = None
        self._closed = False

    def _connect(self) -> psycopg.Connection[TupleRow]:
        try:
            self._conn = psycopg.connect(self._url, autocommit=False, **self._extra)
            # The locking reasoning here is READ COMMITTED's, whatever the server default.
            self._conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        except psycopg.OperationalError as exc:
            raise TemporaryError(f"cannot reach the PostgreSQL store at {self.where}: "
                                 f"{self._redact(exc)}") from exc
        except psycopg.Error as exc:  # a bad option in the URL
            raise InputError(f"cannot open the PostgreSQL store at {self.where}: "
                             f"{self._redact(exc)}", field="--store") from exc
        return self._conn

    def run(self, work: Callable[[Cursor], T], *, conflict: str = "") -> T:
        """Run ``work`` in one transaction and commit; retry once on a fresh connection if
        the old one turned out dead before the commit was sent."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the PostgreSQL store is closed")
            for attempt in (1, 2):
                conn = self._conn or self._connect()
                committing = False
                try:
                    with conn.cursor() as cur:
                        result = work(cur)
                    committing = True
                    conn.commit()
                    return result
                except psycopg.Error as exc:
                    self._end(conn)
                    if attempt == 1 and not committing and conn.broken:
                        continue  # the server rolled that transaction back: run it again
                    raise self._translate(exc, conflict=conflict,
                                          committing=committing) from exc
                except BaseException:
                    self._end(conn)
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _end(self, conn: psycopg.Connection[TupleRow]) -> None:
        """Roll back after a failure; forget a connection that cannot be used again."""
        if not conn.broken and not conn.closed:
            try:
                conn.rollback()
                return
            except psycopg.Error:
                pass
        try:
            conn.close()
        finally:
            self._conn = None

    def _translate(self, exc: psycopg.Error, *, conflict: str, committing: bool) -> CanaryError:
        if isinstance(exc, pg_errors.UniqueViolation):
            if exc.diag.constraint_name == "events_key_key":
                return ConflictError("an event with that key was already recorded")
            if conflict:
                return ConflictError(conflict)
        if isinstance(exc, psycopg.DataError):
            return InputError(f"the PostgreSQL store refused a value: {self._redact(exc)}")
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            return StoreError(f"the PostgreSQL store at {self.where} is read-only: "
                              f"{self._redact(exc)}")
        if isinstance(exc, psycopg.ProgrammingError):  # a foreign schema, no privilege
            return StoreError(f"the PostgreSQL store at {self.where} cannot be used: "
                              f"{self._redact(exc)} (not a canary schema, or no privilege?)")
        if committing:
            return TemporaryError(f"lost the PostgreSQL store at {self.where} while "
                                  "committing: the change may or may not be saved; read again")
        if isinstance(exc, psycopg.OperationalError):
            return TemporaryError(f"the PostgreSQL store at {self.where} is unavailable: "
                                  f"{self._redact(exc)}")
        return TemporaryError(f"PostgreSQL store error at {self.where}: {self._redact(exc)}")

    def _redact(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return text.replace(self._secret, "***") if self._secret else text

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""
