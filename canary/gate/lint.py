"""Static half of the migration gate: read SQL migration files, say which statements the
old version could not survive, before anything touches a database.

Files are cut into statements on sqlglot's own tokens (statements.py: a ``;`` inside a
string or a ``$$`` body does not split), each statement is parsed on its own (so one bad statement
is reported and the rest are still checked), and ``checks.py`` judges it. A reviewed
exception is written next to the statement::

    -- canary:allow drop-column reason: column unused since v1.4
    ALTER TABLE orders DROP COLUMN legacy_note;

An opt-out needs a reason; without one it is itself an error and suppresses nothing.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot.errors import ParseError, SqlglotError

from canary.errors import InputError
from canary.gate.checks import TableKey, check, created_table
from canary.gate.rules import RULES, Hit, Severity
from canary.gate.statements import (
    LineIndex,
    OptOut,
    SqlStatement,
    opt_outs,
    split_statements,
    tokenize,
)

__all__ = ["DIALECTS", "Finding", "LintReport", "SqlStatement", "expand_paths", "lint_paths",
           "lint_sql", "split_sql"]

DIALECTS: dict[str, str] = {"postgres": "postgres", "postgresql": "postgres",
                            "mysql": "mysql", "sqlite": "sqlite"}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based line where the statement (or the opt-out comment) starts
    rule: str
    severity: Severity
    message: str
    fix: str
    allowed: str | None = None  # the opt-out's reason when a comment allowed this finding

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "rule": self.rule,
                "severity": self.severity.value, "message": self.message, "fix": self.fix,
                "allowed": self.allowed}

    def render(self) -> str:
        where = f"{self.file}:{self.line}: {self.rule}: "
        if self.allowed is not None:
            return f"{where}allowed: {self.message} (reason: {self.allowed})"
        level = "warning: " if self.severity is Severity.WARNING else ""
        return f"{where}{level}{self.message} (fix: {self.fix})"


@dataclass(frozen=True)
class LintReport:
    dialect: str
    files: tuple[str, ...]
    findings: tuple[Finding, ...]  # in file order, then line order; allowed ones included

    @property
    def errors(self) -> tuple[Finding, ...]:
        return self._active(Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return self._active(Severity.WARNING)

    @property
    def allowed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.allowed is not None)

    @property
    def ok(self) -> bool:
        """True when nothing blocks: warnings and allowed findings do not."""
        return not self.errors

    def _active(self, severity: Severity) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.allowed is None and f.severity is severity)

    def summary(self) -> str:
        return (f"{len(self.errors)} error(s), {len(self.warnings)} warning(s), "
                f"{len(self.allowed)} allowed, in {len(self.files)} file(s)")

    def render_text(self) -> list[str]:
        """One ``file:line: rule-id: message (fix: ...)`` line per finding, then a summary."""
        return [f.render() for f in self.findings] + [self.summary()]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "dialect": self.dialect, "files": list(self.files),
                "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [f.to_json() for f in self.findings]}


def split_sql(text: str, *, dialect: str) -> list[SqlStatement]:
    """The statements of a migration, cut the way the lint sees them; for runners that
    must send them one by one (CREATE INDEX CONCURRENTLY refuses a multi-statement query)."""
    try:
        tokens = tokenize(text, _dialect(dialect))
    except SqlglotError as exc:
        raise InputError(f"cannot tokenize SQL: {exc}") from exc
    lines = LineIndex(text)
    return [SqlStatement(line=lines.line_of(s.start), sql=s.text(text))
            for s in split_statements(tokens)]


def lint_sql(text: str, *, dialect: str, file: str = "<string>") -> list[Finding]:
    """Every finding in one migration's SQL text, in line order."""
    dialect = _dialect(dialect)
    lines = LineIndex(text)
    try:
        tokens = tokenize(text, dialect)
    except SqlglotError as exc:
        # Without tokens there are no statements to tell apart: the whole file is unread.
        first = next(iter(str(exc).splitlines()), "")
        return [_finding(file, 1, dialect, Hit(
            "unparsable-statement", f"cannot tokenize the file ({first}); nothing in it "
            "was checked"))]
    statements = split_statements(tokens)
    allows = opt_outs(text, tokens, statements, lines)
    new_tables: set[TableKey] = set()
    findings: list[Finding] = []
    for index, stmt in enumerate(statements):
        line = lines.line_of(stmt.start)
        hits = _judge(stmt.text(text), dialect=dialect, new_tables=new_tables)
        mine = [o for o in allows if o.statement == index]
        allowed = {rule: o.reason for o in mine if o.valid for rule in o.rules}
        used: set[str] = set()
        for hit in hits:
            reason = allowed.get(hit.rule)
            if reason is not None:
                used.add(hit.rule)
            findings.append(_finding(file, line, dialect, hit, allowed=reason))
        findings.extend(_opt_out_findings(file, dialect, mine, used))
    orphans = [o for o in allows if o.statement is None]
    findings.extend(_opt_out_findings(file, dialect, orphans, set()))
    return sorted(findings, key=lambda f: f.line)


def lint_paths(paths: Sequence[str], *, dialect: str) -> LintReport:
    """Lint every file ``paths`` name, in order; see ``expand_paths`` for the order."""
    dialect = _dialect(dialect)
    files = expand_paths(paths)
    findings: list[Finding] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read migration file: {exc}", file=path) from exc
        findings.extend(lint_sql(text, dialect=dialect, file=path))
    return LintReport(dialect=dialect, files=tuple(files), findings=tuple(findings))


def expand_paths(paths: Sequence[str]) -> list[str]:
    """Files in the order migrations run: arguments as given; inside a directory or a glob,
    names in natural order (``2_x.sql`` before ``10_x.sql``). Each file once."""
    if not paths:
        raise InputError("no migration files given")
    out: list[str] = []
    seen: set[str] = set()
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(glob.escape(path), "*.sql")), key=_natural)
            if not found:
                raise InputError("directory holds no *.sql files", file=path)
        elif os.path.isfile(path):
            found = [path]
        elif glob.has_magic(path):
            found = sorted((p for p in glob.glob(path) if os.path.isfile(p)), key=_natural)
            if not found:
                raise InputError("pattern matches no files", file=path)
        else:
            raise InputError("no such file or directory", file=path)
        for p in found:
            if os.path.realpath(p) not in seen:
                seen.add(os.path.realpath(p))
                out.append(p)
    return out


def _natural(path: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", os.path.basename(path)) if part]


def _dialect(name: str) -> str:
    try:
        return DIALECTS[name.lower()]
    except KeyError:
        raise InputError(f"unknown SQL dialect {name!r}; expected one of "
                         f"{', '.join(sorted(set(DIALECTS.values())))}",
                         field="dialect") from None


def _finding(file: str, line: int, dialect: str, hit: Hit, *,
             allowed: str | None = None) -> Finding:
    rule = RULES[hit.rule]
    return Finding(file=file, line=line, rule=rule.id, severity=rule.severity,
                   message=f"{hit.subject}: {rule.reason}", fix=rule.fix_for(dialect),
                   allowed=allowed)


def _judge(sql: str, *, dialect: str, new_tables: set[TableKey]) -> list[Hit]:
    try:
        with _quiet_sqlglot():
            stmt = sqlglot.parse_one(sql, read=dialect)
    except ParseError as exc:
        detail = exc.errors[0].get("description", str(exc)) if exc.errors else str(exc)
        return [Hit("unparsable-statement", f"cannot parse ({detail})")]
    except Exception as exc:  # noqa: BLE001 - a sqlglot crash must not hide the statement
        return [Hit("unparsable-statement", f"cannot parse ({type(exc).__name__}: {exc})")]
    hits = check(stmt, sql=sql, dialect=dialect, new_tables=new_tables)
    created = created_table(stmt)
    if created is not None:
        new_tables.add(created)
    return hits


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    """sqlglot logs a warning when it falls back to an opaque Command; we report those
    ourselves, so its log line would only be noise on the CLI's stderr."""
    logger = logging.getLogger("sqlglot")
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


def _opt_out_findings(file: str, dialect: str, found: list[OptOut],
                      used: set[str]) -> Iterator[Finding]:
    for o in found:
        if not o.valid:
            yield _finding(file, o.line, dialect, Hit("invalid-opt-out", f"opt-out {o.problem}"))
            continue
        for rule in o.rules:
            if rule not in used:
                where = "its statement" if o.statement is not None else "any statement"
                yield _finding(file, o.line, dialect, Hit(
                    "unused-opt-out", f"opt-out for {rule} matches nothing in {where}"))
