"""Each unsafe schema change is caught by its rule, per dialect; expand-only ones pass."""

from __future__ import annotations

import pytest

from canary.gate.lint import lint_sql
from canary.gate.rules import RULES, Severity

ALL = ("postgres", "mysql", "sqlite")
PG = ("postgres",)
MY = ("mysql",)

# (dialects, statement, the rules it must break: exactly these)
UNSAFE: list[tuple[tuple[str, ...], str, set[str]]] = [
    (ALL, "ALTER TABLE orders DROP COLUMN note", {"drop-column"}),
    (PG, "ALTER TABLE orders DROP COLUMN IF EXISTS a, DROP COLUMN b", {"drop-column"}),
    (MY, "ALTER TABLE orders DROP note", {"drop-column"}),
    (ALL, "DROP TABLE orders", {"drop-table"}),
    (ALL, "DROP TABLE IF EXISTS orders", {"drop-table"}),
    (ALL, "DROP VIEW order_totals", {"drop-table"}),
    (PG, "DROP MATERIALIZED VIEW order_totals", {"drop-table"}),
    (PG, "DROP SCHEMA shop CASCADE", {"drop-table"}),
    (ALL, "ALTER TABLE orders RENAME COLUMN total TO amount", {"rename-column"}),
    (MY, "ALTER TABLE orders CHANGE total amount INT", {"rename-column", "change-column-type"}),
    (ALL, "ALTER TABLE orders RENAME TO purchases", {"rename-table"}),
    (MY, "RENAME TABLE orders TO purchases", {"rename-table"}),
    (PG, "ALTER TABLE orders SET SCHEMA archive", {"rename-table"}),
    (PG, "ALTER VIEW order_totals RENAME TO totals", {"rename-table"}),
    (PG, "ALTER TABLE orders ALTER COLUMN total TYPE bigint", {"change-column-type"}),
    (PG, "ALTER TABLE orders ALTER COLUMN total SET DATA TYPE numeric(12, 2) USING total::numeric",
     {"change-column-type"}),
    (MY, "ALTER TABLE orders MODIFY COLUMN total BIGINT", {"change-column-type"}),
    (MY, "ALTER TABLE orders CHANGE total total BIGINT", {"change-column-type"}),
    (ALL, "ALTER TABLE orders ADD COLUMN status TEXT NOT NULL", {"add-not-null-without-default"}),
    (ALL, "ALTER TABLE orders ADD COLUMN status TEXT DEFAULT NULL NOT NULL",
     {"add-not-null-without-default"}),
    (PG, "ALTER TABLE orders ADD COLUMN code int PRIMARY KEY", {"add-not-null-without-default"}),
    (PG, "ALTER TABLE orders ALTER COLUMN status SET NOT NULL", {"add-not-null-without-default"}),
    (PG + MY, "ALTER TABLE customers ADD CONSTRAINT email_key UNIQUE (email)",
     {"add-unique-constraint"}),
    (MY, "ALTER TABLE customers ADD UNIQUE INDEX email_key (email)", {"add-unique-constraint"}),
    (PG + MY, "ALTER TABLE customers ADD PRIMARY KEY (id)", {"add-unique-constraint"}),
    (ALL, "CREATE UNIQUE INDEX email_key ON customers (email)", {"add-unique-constraint"}),
    (PG, "ALTER TABLE orders ADD COLUMN code int DEFAULT 0 UNIQUE", {"add-unique-constraint"}),
    (PG + MY, "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) "
     "REFERENCES customers (id)", {"add-foreign-key"}),
    (PG + MY, "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
     {"add-foreign-key"}),
    (MY, "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES customers (id)"
     " NOT VALID", {"add-foreign-key"}),  # NOT VALID means nothing outside PostgreSQL
    (PG, "ALTER TABLE orders ADD COLUMN shop_id int DEFAULT 1 REFERENCES shops (id)",
     {"add-foreign-key"}),
    (PG, "ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total >= 0)",
     {"add-check-constraint"}),
    (PG, "CREATE INDEX orders_status_idx ON orders (status)",
     {"create-index-without-concurrently"}),
    (PG, "ALTER TABLE orders ENABLE TRIGGER audit", {"unrecognized-schema-change"}),
    (PG, "ALTER TABLE orders SET (fillfactor = 70)", {"unrecognized-schema-change"}),
    (PG, "ALTER SEQUENCE orders_id_seq RESTART WITH 1", {"unrecognized-schema-change"}),
    (PG, "ALTER TABLE orders ADD CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&)",
     {"unrecognized-schema-change"}),
    (PG, "DO $$ BEGIN EXECUTE 'ALTER TABLE orders DROP COLUMN note'; END $$",
     {"unrecognized-schema-change"}),
    (ALL, "SELEC total FROM orders", {"unparsable-statement"}),
    (ALL, "CREATE TABLE broken (id int", {"unparsable-statement"}),
    (ALL, "FROB orders", {"unparsable-statement"}),  # sqlglot reads it as a column alias
    (PG, "ALTER TABLE orders FROBNICATE", {"unrecognized-schema-change"}),
]

SAFE: list[tuple[tuple[str, ...], str]] = [
    (ALL, "ALTER TABLE orders ADD COLUMN note TEXT"),
    (ALL, "ALTER TABLE orders ADD COLUMN status TEXT NOT NULL DEFAULT 'placed'"),
    (ALL, "CREATE TABLE coupons (code TEXT PRIMARY KEY, percent INT NOT NULL)"),
    (ALL, "DROP INDEX orders_status_idx"),
    (ALL, "INSERT INTO orders (id) VALUES (1)"),
    (ALL, "UPDATE orders SET status = 'placed' WHERE status IS NULL"),
    (PG + MY, "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'placed'"),
    (PG, "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT"),
    (PG, "ALTER TABLE orders ALTER COLUMN status DROP NOT NULL"),
    (PG, "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text"),
    (PG, "ALTER TABLE orders ADD COLUMN seq bigserial"),
    (PG, "ALTER TABLE orders ADD COLUMN n int GENERATED ALWAYS AS IDENTITY"),
    (PG, "CREATE INDEX CONCURRENTLY orders_status_idx ON orders (status)"),
    (PG, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS email_key ON customers (email)"),
    (PG, "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES customers (id)"
     " NOT VALID"),
    (PG, "ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total >= 0) NOT VALID"),
    (PG, "ALTER TABLE orders VALIDATE CONSTRAINT fk"),
    (PG, "ALTER TABLE customers ADD CONSTRAINT email_unique UNIQUE USING INDEX email_key"),
    (PG, "ALTER TABLE orders DROP CONSTRAINT fk"),
    (PG, "ALTER INDEX orders_status_idx RENAME TO orders_state_idx"),
    (PG, "ALTER TYPE mood ADD VALUE 'meh'"),
    (PG, "CREATE EXTENSION IF NOT EXISTS pgcrypto"),
    (PG, "COMMENT ON TABLE orders IS 'one row per order'"),
    (PG, "DROP INDEX CONCURRENTLY orders_status_idx"),
    (MY + ("sqlite",), "CREATE INDEX orders_status_idx ON orders (status)"),
    (MY, "ALTER TABLE orders ADD INDEX orders_status_idx (status)"),
    (MY, "ALTER TABLE orders ADD COLUMN status INT NULL"),
    (MY, "ALTER TABLE orders DROP FOREIGN KEY fk"),
]


def _cases_unsafe() -> list[object]:
    return [pytest.param(d, sql, rules, id=f"{d}:{sql[:50]}")
            for dialects, sql, rules in UNSAFE for d in dialects]


def _cases_safe() -> list[object]:
    return [pytest.param(d, sql, id=f"{d}:{sql[:50]}") for dialects, sql in SAFE for d in dialects]


@pytest.mark.parametrize(("dialect", "sql", "rules"), _cases_unsafe())
def test_unsafe_statement_is_caught_by_its_rule(dialect: str, sql: str, rules: set[str]) -> None:
    findings = lint_sql(sql + ";", dialect=dialect)
    assert {f.rule for f in findings} == rules, [f.render() for f in findings]
    for f in findings:
        assert f.line == 1
        assert f.severity is RULES[f.rule].severity
        assert f.message and f.fix and f.allowed is None


@pytest.mark.parametrize(("dialect", "sql"), _cases_safe())
def test_expand_only_statement_passes(dialect: str, sql: str) -> None:
    findings = lint_sql(sql + ";", dialect=dialect)
    assert findings == [], [f.render() for f in findings]


def test_every_statement_rule_has_an_unsafe_case() -> None:
    covered = {rule for _, _, rules in UNSAFE for rule in rules}
    meta = {"invalid-opt-out", "unused-opt-out"}  # tested in test_lint_opt_outs.py
    assert covered | meta == set(RULES)


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_concurrently_is_only_asked_of_postgres(dialect: str) -> None:
    assert lint_sql("CREATE INDEX i ON orders (status);", dialect=dialect) == []


def test_postgres_fixes_name_the_lock_friendly_form() -> None:
    sql = "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id);"
    [pg] = lint_sql(sql, dialect="postgres")
    [my] = lint_sql(sql, dialect="mysql")
    assert "NOT VALID" in pg.fix and "VALIDATE" in pg.fix
    assert "NOT VALID" not in my.fix


def test_blocking_and_reporting_severities() -> None:
    [index] = lint_sql("CREATE INDEX i ON orders (status);", dialect="postgres")
    [drop] = lint_sql("ALTER TABLE orders DROP COLUMN note;", dialect="postgres")
    assert index.severity is Severity.WARNING
    assert drop.severity is Severity.ERROR


def test_message_names_the_table_and_column() -> None:
    [f] = lint_sql("ALTER TABLE shop.orders RENAME COLUMN total TO amount;", dialect="postgres")
    assert "shop.orders.total" in f.message and "amount" in f.message


def test_tables_created_in_the_same_file_are_free() -> None:
    sql = """
        CREATE TABLE coupons (code text PRIMARY KEY);
        CREATE INDEX coupons_code_idx ON coupons (code);
        ALTER TABLE coupons ADD COLUMN percent int NOT NULL;
        ALTER TABLE coupons RENAME COLUMN percent TO pct;
        CREATE INDEX orders_status_idx ON orders (status);
    """
    findings = lint_sql(sql, dialect="postgres")
    assert [(f.line, f.rule) for f in findings] == [(6, "create-index-without-concurrently")]


def test_a_quoted_name_is_another_table() -> None:
    sql = 'CREATE TABLE orders (id int);\nDROP TABLE orders;\nDROP TABLE "Orders";'
    assert [(f.line, f.rule) for f in lint_sql(sql, dialect="postgres")] == [(3, "drop-table")]
    sql = 'CREATE TABLE Shop.Orders (id int);\nCREATE INDEX i ON shop.orders (id);'
    assert lint_sql(sql, dialect="postgres") == []


def test_a_table_created_in_another_file_is_not_free() -> None:
    assert [f.rule for f in lint_sql("CREATE INDEX i ON coupons (code);", dialect="postgres")] \
        == ["create-index-without-concurrently"]


def test_every_rule_has_a_reason_and_a_fix_on_one_line() -> None:
    for rule in RULES.values():
        for text in (rule.reason, rule.fix, rule.postgres_fix or "x"):
            assert text and "\n" not in text, rule.id
