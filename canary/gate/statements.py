"""A migration file as the lint reads it: cut into statements on sqlglot's own tokens (so a
``;`` inside a string or a ``$$`` body does not split), line numbers for offsets, and the
``canary:allow`` opt-out comments, each tied to the statement it is about. No judging here:
lint.py asks rules.py about each statement and applies the opt-outs."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from sqlglot import Dialect, Token, TokenType

from canary.gate.rules import RULES


@dataclass(frozen=True)
class SqlStatement:
    line: int
    sql: str  # without its terminating ``;``


def tokenize(text: str, dialect: str) -> list[Token]:
    return Dialect.get_or_raise(dialect).tokenize(text)


@dataclass(frozen=True)
class Statement:
    tokens: list[Token]
    semicolon: Token | None  # the ``;`` that ends it, if any

    @property
    def start(self) -> int:
        return self.tokens[0].start

    def text(self, source: str) -> str:
        return source[self.start:self.tokens[-1].end + 1]


def split_statements(tokens: list[Token]) -> list[Statement]:
    out: list[Statement] = []
    current: list[Token] = []
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            if current:
                out.append(Statement(tokens=current, semicolon=token))
            current = []
        else:
            current.append(token)
    if current:
        out.append(Statement(tokens=current, semicolon=None))
    return out


class LineIndex:
    def __init__(self, text: str) -> None:
        self._newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_left(self._newlines, offset) + 1


@dataclass(frozen=True)
class OptOut:
    line: int
    rules: tuple[str, ...]
    reason: str
    problem: str = ""  # why it is invalid; empty when valid
    statement: int | None = field(default=None)

    @property
    def valid(self) -> bool:
        return not self.problem


_DIRECTIVE = re.compile(r"canary:allow\b(?P<rest>[^\n]*)")
_BODY = re.compile(r"\s*(?P<ids>[\w-]+(?:\s*,\s*[\w-]+)*)?\s*(?:reason:\s*(?P<reason>.*))?$")


def opt_outs(text: str, tokens: list[Token], statements: list[Statement],
              lines: LineIndex) -> list[OptOut]:
    """Opt-out comments, each tied to its statement. Comments live only in the gaps
    between tokens, so a ``canary:allow`` inside a string literal is never one."""
    owner: dict[int, int] = {}  # id(token) -> statement index
    for index, stmt in enumerate(statements):
        for token in [*stmt.tokens, *([stmt.semicolon] if stmt.semicolon else [])]:
            owner[id(token)] = index
    out: list[OptOut] = []
    bounds = [-1, *[t.end for t in tokens]]
    for i, prev_end in enumerate(bounds):
        gap_end = tokens[i].start if i < len(tokens) else len(text)
        gap = text[prev_end + 1:gap_end]
        for m in _DIRECTIVE.finditer(gap):
            line = lines.line_of(prev_end + 1 + m.start())
            prev = tokens[i - 1] if i > 0 else None
            nxt = tokens[i] if i < len(tokens) else None
            target = _target(prev, nxt, line, owner, lines)
            out.append(_parse_directive(m.group("rest"), line=line, statement=target))
    return out


def _target(prev: Token | None, nxt: Token | None, line: int, owner: dict[int, int],
            lines: LineIndex) -> int | None:
    """A comment belongs to the statement it sits in, to the one whose ``;`` ends its
    line (a trailing comment), or else to the next statement."""
    trailing = prev is not None and (prev.token_type != TokenType.SEMICOLON
                                     or lines.line_of(prev.end) == line)
    if trailing and id(prev) in owner:
        return owner[id(prev)]
    return owner.get(id(nxt)) if nxt is not None else None


def _parse_directive(rest: str, *, line: int, statement: int | None) -> OptOut:
    rest = rest.split("*/", 1)[0].strip()
    m = _BODY.match(rest)
    ids = tuple(i.strip() for i in m.group("ids").split(",")) if m and m.group("ids") else ()
    reason = (m.group("reason") or "").strip() if m else ""
    problem = ""
    unknown = [i for i in ids if i not in RULES]
    if not m or not ids:
        problem = "names no rule"
    elif unknown:
        problem = f"names unknown rule(s) {', '.join(unknown)}"
    elif not reason:
        problem = f"allows {', '.join(ids)} without a reason"
    return OptOut(line=line, rules=ids, reason=reason, problem=problem, statement=statement)
