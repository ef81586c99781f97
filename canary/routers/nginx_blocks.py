"""canary's marked blocks in an nginx config: finding them, and the managed upstream block's
server lines (the split they produce, the lines for a split). Pure text: nginx.py reads and
writes the file and runs nginx.

Weights: every stable server gets ``stable% * len(canary)`` and every canary server
``canary% * len(stable)``, reduced by their common divisor, so each side's share is exact
(95/5 over one server each renders ``weight=19`` / ``weight=1``). nginx rejects
``weight=0``, so a side at 0% is rendered ``down``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from canary.errors import RouterError
from canary.model import Weights

_UPSTREAM_OPEN = re.compile(r"\bupstream\s+([^\s{]+)\s*\{")
_SERVER_LINE = re.compile(r"^\s*server\s+(\S+?)((?:\s+[^;]*)?);\s*(#.*)?$")


@dataclass(frozen=True)
class Block:
    start: int  # index of the first line after the begin marker
    end: int  # index of the end marker line
    indent: str


def find_block(lines: Sequence[str], *, upstream: str, kind: str, where: str) -> Block | None:
    """The ``# canary:begin UPSTREAM KIND`` ... ``# canary:end UPSTREAM KIND`` block (``routes``
    or ``location``); None when the file has neither marker."""
    begin = [i for i, line in enumerate(lines)
             if line.split() == ["#", "canary:begin", upstream, kind]]
    end = [i for i, line in enumerate(lines)
           if line.split() == ["#", "canary:end", upstream, kind]]
    if not begin and not end:
        return None
    if len(begin) != 1 or len(end) != 1 or end[0] < begin[0]:
        raise RouterError(
            f"{where}: expected one `# canary:begin {upstream} {kind}` line "
            f"followed by one `# canary:end {upstream} {kind}` line; found "
            f"{len(begin)} begin and {len(end)} end markers")
    return _block_after(lines, begin[0], end[0])


def locate_upstream(lines: Sequence[str], *, upstream: str, where: str) -> Block:
    """The managed server lines, which must sit inside ``upstream UPSTREAM { ... }``."""
    begin = [i for i, line in enumerate(lines)
             if line.split() == ["#", "canary:begin", upstream]]
    end = [i for i, line in enumerate(lines)
           if line.split() == ["#", "canary:end", upstream]]
    if len(begin) != 1 or len(end) != 1 or end[0] < begin[0]:
        raise RouterError(
            f"{where}: expected one `# canary:begin {upstream}` line followed "
            f"by one `# canary:end {upstream}` line inside upstream {upstream}; "
            f"found {len(begin)} begin and {len(end)} end markers")
    before = "".join(lines[:begin[0]])
    opened = list(_UPSTREAM_OPEN.finditer(before))
    if not opened or opened[-1].group(1) != upstream or "}" in before[opened[-1].end():]:
        raise RouterError(f"{where}: the canary markers for {upstream} are not "
                          f"inside `upstream {upstream} {{ ... }}`")
    return _block_after(lines, begin[0], end[0])


def _block_after(lines: Sequence[str], begin: int, end: int) -> Block:
    marker = lines[begin]
    return Block(start=begin + 1, end=end, indent=marker[:len(marker) - len(marker.lstrip())])


def render_servers(split: Weights, *, stable: Sequence[str], canary: Sequence[str],
                   indent: str = "") -> list[str]:
    """The server lines of the managed block for ``split`` (see module docstring)."""
    raw = {**{a: split.stable * len(canary) for a in stable},
           **{a: split.canary * len(stable) for a in canary}}
    divisor = math.gcd(*raw.values())  # > 0: one side always has a share
    return [f"{indent}server {a} weight={w // divisor};" if w else f"{indent}server {a} down;"
            for a, w in raw.items()]


def split_from(block: Sequence[str], *, stable: Sequence[str], canary: Sequence[str],
               where: str) -> Weights | None:
    """The split the managed block's server lines produce; None if no server takes traffic.

    A configured server missing from the block gets no traffic; a server in the block that
    is on neither side cannot be classified and is an error.
    """
    totals = {"stable": 0, "canary": 0}
    side = {**{a: "stable" for a in stable}, **{a: "canary" for a in canary}}
    for number, line in enumerate(block, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = _SERVER_LINE.match(line)
        if match is None:
            raise RouterError(f"{where}: line {number} of the managed block is not a server "
                              f"line ({text!r}); canary rewrites that block, so keep other "
                              "directives outside the markers")
        address, params = match.group(1), match.group(2).split()
        if address not in side:
            raise RouterError(f"{where}: server {address} in the managed block is neither a "
                              "stable nor a canary server of the router config")
        weight = 1
        for param in params:
            if param in ("down", "backup"):  # no share of normal traffic
                weight = 0
                break
            if param.startswith("weight="):
                try:
                    weight = int(param.removeprefix("weight="))
                except ValueError as exc:
                    raise RouterError(f"{where}: bad {param!r} for server {address}") from exc
        totals[side[address]] += weight
    s, c = totals["stable"], totals["canary"]
    total = s + c
    if total == 0:
        return None
    pct = (200 * c + total) // (2 * total)  # round half up
    if c > 0:
        pct = max(pct, 1)  # a canary that gets anything is never reported as 0%
    if s > 0:
        pct = min(pct, 99)
    return Weights(canary=pct)
