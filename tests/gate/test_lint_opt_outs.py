"""Opt-out comments, where findings are reported (line numbers) and how statements are cut."""

from __future__ import annotations

import pytest

from canary.errors import InputError
from canary.gate.lint import lint_sql, split_sql


def rules_at(sql: str, dialect: str = "postgres") -> list[tuple[int, str, bool]]:
    """(line, rule, allowed?) for every finding."""
    return [(f.line, f.rule, f.allowed is not None) for f in lint_sql(sql, dialect=dialect)]


DROP = "ALTER TABLE orders DROP COLUMN note;"


@pytest.mark.parametrize("sql", [
    f"-- canary:allow drop-column reason: unused since v1.4\n{DROP}",
    f"{DROP} -- canary:allow drop-column reason: unused since v1.4",
    f"/* canary:allow drop-column reason: unused since v1.4 */\n{DROP}",
    "ALTER TABLE orders -- canary:allow drop-column reason: unused since v1.4\n"
    "  DROP COLUMN note;",
    f"-- canary:allow drop-column reason: unused since v1.4\n-- reviewed by ana\n\n{DROP}",
    f"-- canary:allow rename-column, drop-column reason: unused since v1.4\n{DROP}",
], ids=["above", "trailing", "block", "inside", "above-with-more-comments", "two-rules"])
def test_opt_out_with_reason_allows_the_finding(sql: str) -> None:
    findings = lint_sql(sql, dialect="postgres")
    drop = [f for f in findings if f.rule == "drop-column"]
    assert len(drop) == 1 and drop[0].allowed == "unused since v1.4"
    assert [f.rule for f in findings if f.allowed is None and f.severity == "error"] == []


@pytest.mark.parametrize("dialect", ["postgres", "mysql", "sqlite"])
def test_opt_out_works_in_every_dialect(dialect: str) -> None:
    sql = f"-- canary:allow drop-column reason: unused since v1.4\n{DROP}"
    assert rules_at(sql, dialect) == [(2, "drop-column", True)]


def test_opt_out_without_reason_is_an_error_and_allows_nothing() -> None:
    sql = f"-- canary:allow drop-column\n{DROP}"
    assert rules_at(sql) == [(1, "invalid-opt-out", False), (2, "drop-column", False)]
    sql = f"-- canary:allow drop-column reason:   \n{DROP}"
    assert rules_at(sql) == [(1, "invalid-opt-out", False), (2, "drop-column", False)]


@pytest.mark.parametrize("comment", [
    "-- canary:allow drop-colum reason: typo in the rule id",
    "-- canary:allow reason: which rule?",
    "-- canary:allow",
])
def test_malformed_opt_out_is_an_error(comment: str) -> None:
    assert rules_at(f"{comment}\n{DROP}") == [
        (1, "invalid-opt-out", False), (2, "drop-column", False)]


def test_opt_out_for_another_rule_does_not_hide_the_finding() -> None:
    sql = f"-- canary:allow drop-table reason: wrong rule\n{DROP}"
    assert rules_at(sql) == [(1, "unused-opt-out", False), (2, "drop-column", False)]


def test_opt_out_belongs_to_one_statement_only() -> None:
    sql = f"-- canary:allow drop-column reason: only the first\n{DROP}\n{DROP}"
    assert rules_at(sql) == [(2, "drop-column", True), (3, "drop-column", False)]


def test_opt_out_below_a_statement_belongs_to_the_next_one() -> None:
    sql = f"{DROP}\n-- canary:allow drop-column reason: misplaced\nALTER TABLE a ADD COLUMN b int;"
    assert rules_at(sql) == [(1, "drop-column", False), (2, "unused-opt-out", False)]


def test_opt_out_at_the_end_of_the_file_matches_nothing() -> None:
    sql = f"{DROP}\n-- canary:allow drop-column reason: too late"
    assert rules_at(sql) == [(1, "drop-column", False), (2, "unused-opt-out", False)]


def test_opt_out_text_inside_a_string_is_not_a_comment() -> None:
    sql = ("INSERT INTO notes VALUES ('-- canary:allow drop-column reason: no');\n"
           "ALTER TABLE orders DROP COLUMN note;")
    assert rules_at(sql) == [(2, "drop-column", False)]


def test_unparsable_statement_can_be_allowed_after_review() -> None:
    sql = "-- canary:allow unparsable-statement reason: vendor syntax, reviewed\nFROB orders;"
    assert rules_at(sql) == [(2, "unparsable-statement", True)]


def test_line_numbers_are_those_of_each_statement_start() -> None:
    sql = """-- header comment
CREATE TABLE coupons (
    code text PRIMARY KEY  -- ; not an end
);

INSERT INTO coupons VALUES ('a;b
c;d');
CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;
/* a block comment;
   over lines */ ALTER TABLE orders
    DROP COLUMN note;
ALTER TABLE orders RENAME TO purchases; ALTER TABLE purchases DROP COLUMN x;
"""
    assert rules_at(sql) == [(10, "drop-column", False), (12, "rename-table", False),
                             (12, "drop-column", False)]


def test_an_unparsable_statement_does_not_stop_the_others() -> None:
    sql = f"{DROP}\nCREATE TABLE broken (id int;\n\n{DROP}\n"
    assert rules_at(sql) == [(1, "drop-column", False), (2, "unparsable-statement", False),
                             (4, "drop-column", False)]


def test_a_file_that_cannot_be_tokenized_is_one_error() -> None:
    findings = lint_sql(f"{DROP}\nINSERT INTO t VALUES ('unterminated);\n", dialect="postgres")
    assert [(f.line, f.rule) for f in findings] == [(1, "unparsable-statement")]
    assert "nothing in it was checked" in findings[0].message


def test_empty_and_comment_only_text_has_no_findings() -> None:
    assert lint_sql("", dialect="postgres") == []
    assert lint_sql("-- nothing yet\n;;\n", dialect="sqlite") == []


def test_last_statement_needs_no_semicolon() -> None:
    assert rules_at("ALTER TABLE orders ADD COLUMN a int;\nDROP TABLE orders") == [
        (2, "drop-table", False)]


def test_split_sql_keeps_bodies_whole_and_lines() -> None:
    statements = split_sql("SELECT 1;\n\nDO $$ BEGIN PERFORM 1; END $$;\nSELECT ';'",
                           dialect="postgres")
    assert [(s.line, s.sql) for s in statements] == [
        (1, "SELECT 1"), (3, "DO $$ BEGIN PERFORM 1; END $$"), (4, "SELECT ';'")]
    with pytest.raises(InputError):
        split_sql("SELECT 'x", dialect="postgres")


def test_unknown_dialect_is_an_input_error_naming_it() -> None:
    with pytest.raises(InputError, match="oracle"):
        lint_sql(DROP, dialect="oracle")
