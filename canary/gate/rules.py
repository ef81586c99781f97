"""The rules of the migration lint: which schema changes the old version cannot survive.

During a canary both versions run against one database, so a migration must be
*expand-only*: the old code must keep working after it ran. This module is the rule table:
each rule's id, severity, why it hurts and how to do it instead. ``checks.py`` finds, for
one parsed statement, which rules it breaks; ``lint.py`` does the files, the statement
splitting and the opt-out comments around it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.StrEnum):
    ERROR = "error"  # blocks the deploy
    WARNING = "warning"  # reported, does not block


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    reason: str  # why the old version (or the database) suffers, one line
    fix: str  # what to do instead, one line
    postgres_fix: str | None = None  # a better fix where PostgreSQL offers one
    dialects: frozenset[str] | None = None  # None: every dialect

    def fix_for(self, dialect: str) -> str:
        return self.postgres_fix if dialect == "postgres" and self.postgres_fix else self.fix


_PG = frozenset({"postgres"})

RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("drop-column", Severity.ERROR,
         "the old version still reads or writes it and fails",
         "stop using the column in one release, drop it in a later one with an opt-out"),
    Rule("drop-table", Severity.ERROR,
         "the old version still queries it and fails",
         "stop using it in one release, drop it in a later one with an opt-out"),
    Rule("rename-column", Severity.ERROR,
         "the old version still uses the old name and fails",
         "add the new column, write both, backfill, switch reads, drop the old one later"),
    Rule("rename-table", Severity.ERROR,
         "the old version still uses the old name and fails",
         "create the new table (or a view under the old name), migrate, drop the old later"),
    Rule("change-column-type", Severity.ERROR,
         "the old version may read or write values the new type refuses, and the table "
         "may be rewritten under an exclusive lock",
         "add a column of the new type, backfill, switch, drop the old one later"),
    Rule("add-not-null-without-default", Severity.ERROR,
         "existing rows and the old version's inserts have no value for it, so the "
         "migration or the old version's writes fail",
         "add it nullable or with a DEFAULT; enforce NOT NULL once every writer sets it",
         "add it with a DEFAULT; for SET NOT NULL add CHECK (col IS NOT NULL) NOT VALID, "
         "VALIDATE it, then SET NOT NULL once every writer sets it"),
    Rule("add-unique-constraint", Severity.ERROR,
         "fails on existing duplicates, locks the table while the index builds, and the "
         "old version's duplicate writes start failing",
         "deduplicate first and make sure the old version never writes duplicates",
         "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX"),
    Rule("add-foreign-key", Severity.ERROR,
         "checks every existing row under a lock and fails on orphans; the old version's "
         "orphan writes start failing",
         "clean up orphans first and make sure the old version never writes them",
         "ADD CONSTRAINT ... NOT VALID, then ALTER TABLE ... VALIDATE CONSTRAINT separately"),
    Rule("add-check-constraint", Severity.ERROR,
         "checks every existing row under a lock and fails on violations; the old "
         "version's violating writes start failing",
         "fix existing rows first and make sure the old version never violates it",
         "ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT separately"),
    Rule("create-index-without-concurrently", Severity.WARNING,
         "blocks every write to the table while the index builds",
         "CREATE INDEX CONCURRENTLY, outside a transaction block", dialects=_PG),
    Rule("unparsable-statement", Severity.ERROR,
         "canary could not parse it, so it cannot tell whether the old version survives",
         "fix the syntax or the --dialect, or opt out with a reason after a review"),
    Rule("unrecognized-schema-change", Severity.ERROR,
         "canary has no rule for this form, so it cannot tell whether the old version "
         "survives", "review it by hand, then opt out with a reason"),
    Rule("invalid-opt-out", Severity.ERROR,
         "an opt-out must name known rules and give a reason",
         "write `-- canary:allow RULE-ID reason: why it is safe`"),
    Rule("unused-opt-out", Severity.WARNING,
         "the statement it belongs to does not break that rule",
         "remove it, or move it onto (or just above) the statement it is meant for"),
)}


@dataclass(frozen=True)
class Hit:
    """One rule broken by one statement; ``subject`` names what, e.g. ``orders.note``."""

    rule: str
    subject: str
