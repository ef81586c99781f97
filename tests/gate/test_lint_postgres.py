"""The lint against a real PostgreSQL 15: what it passes applies cleanly and the old
version keeps working; what it blocks never reaches the database, and really would have
broken the old version."""

from __future__ import annotations

import os
from collections.abc import Sequence

import psycopg
import pytest

from canary.gate.lint import LintReport, expand_paths, lint_paths, split_sql

pytestmark = pytest.mark.servers

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "migrations")
BASELINE = os.path.join(EXAMPLES, "safe", "0001_create_orders.sql")
EXPAND = [os.path.join(EXAMPLES, "safe", n)
          for n in ("0002_expand_orders.sql", "0003_contract_legacy_note.sql")]
UNSAFE = os.path.join(EXAMPLES, "unsafe")


def migrate(dsn: str, paths: Sequence[str]) -> LintReport:
    """The gate in miniature: lint everything first, apply only when nothing blocks,
    one statement at a time (CREATE INDEX CONCURRENTLY refuses a transaction block)."""
    report = lint_paths(paths, dialect="postgres")
    if report.ok:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for path in expand_paths(paths):
                with open(path, encoding="utf-8") as f:
                    for statement in split_sql(f.read(), dialect="postgres"):
                        conn.execute(statement.sql)
    return report


def old_version_works(dsn: str, n: int) -> list[tuple[int, int]]:
    """What version 1.4 does on every request: it knows none of the new columns."""
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO customers (id, email) VALUES (%s, %s)", (n, f"c{n}@shop"))
        conn.execute("INSERT INTO orders (id, customer_id, total_cents) VALUES (%s, %s, %s)",
                     (n, n, 100 * n))
        return conn.execute("SELECT id, total_cents FROM orders WHERE customer_id = %s",
                            (n,)).fetchall()


def columns(dsn: str, table: str) -> dict[str, tuple[str, str | None, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, column_default, is_nullable "
            "FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s", (table,)).fetchall()
    return {name: (dtype, default, nullable) for name, dtype, default, nullable in rows}


def test_safe_migration_applies_and_the_old_version_survives(postgres_dsn: str) -> None:
    assert migrate(postgres_dsn, [BASELINE]).findings == ()
    assert old_version_works(postgres_dsn, 1) == [(1, 100)]

    report = migrate(postgres_dsn, EXPAND)

    assert report.ok and [f.rule for f in report.allowed] == ["drop-column"]
    assert report.errors == () and report.warnings == ()
    assert old_version_works(postgres_dsn, 2) == [(2, 200)]
    orders = columns(postgres_dsn, "orders")
    assert set(orders) == {"id", "customer_id", "total_cents", "coupon_code", "status"}
    assert orders["status"] == ("text", "'placed'::text", "NO")
    assert orders["coupon_code"][2] == "YES"
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT id, status FROM orders ORDER BY id").fetchall() == [
            (1, "placed"), (2, "placed")]  # the old row and the old version's new row
        constraints: dict[str, bool] = dict(conn.execute(
            "SELECT conname, convalidated FROM pg_constraint "
            "WHERE connamespace = current_schema()::regnamespace AND conname IN "
            "('orders_customer_fk', 'customers_email_unique')").fetchall())
        assert constraints == {"orders_customer_fk": True, "customers_email_unique": True}
        [(valid,)] = conn.execute("SELECT indisvalid FROM pg_index "
                                  "WHERE indexrelid = 'orders_status_idx'::regclass").fetchall()
        assert valid is True


def test_unsafe_migration_is_stopped_before_anything_is_applied(postgres_dsn: str) -> None:
    migrate(postgres_dsn, [BASELINE])
    old_version_works(postgres_dsn, 1)
    before = columns(postgres_dsn, "orders")

    report = migrate(postgres_dsn, [UNSAFE])

    assert not report.ok
    assert {f.rule for f in report.errors} == {
        "rename-column", "add-not-null-without-default", "change-column-type",
        "add-foreign-key", "drop-column"}
    assert [f.rule for f in report.warnings] == ["create-index-without-concurrently"]
    assert columns(postgres_dsn, "orders") == before
    assert old_version_works(postgres_dsn, 2) == [(2, 200)]


def test_what_the_lint_blocks_really_breaks_the_old_version(postgres_dsn: str) -> None:
    """Not a hypothetical: applied (in a transaction rolled back afterwards), the first two
    unsafe statements break version 1.4's query and fail on its existing rows."""
    migrate(postgres_dsn, [BASELINE])
    old_version_works(postgres_dsn, 1)
    [path] = expand_paths([UNSAFE])
    with open(path, encoding="utf-8") as f:
        rename, add_not_null, *_ = split_sql(f.read(), dialect="postgres")
    assert "RENAME COLUMN total_cents" in rename.sql and "NOT NULL" in add_not_null.sql
    with psycopg.connect(postgres_dsn) as conn, conn.transaction(force_rollback=True):
        conn.execute(rename.sql)
        with pytest.raises(psycopg.errors.UndefinedColumn), conn.transaction():
            conn.execute("SELECT id, total_cents FROM orders")
        with pytest.raises(psycopg.errors.NotNullViolation), conn.transaction():
            conn.execute(add_not_null.sql)
    assert old_version_works(postgres_dsn, 2) == [(2, 200)]
