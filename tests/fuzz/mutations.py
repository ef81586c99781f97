"""A seeded corpus of broken rollout and policy files, shared by the fuzz test and
bench/fuzz_validate.py.

Each case starts from a shipped file (examples/rollouts, examples/kubernetes/*/rollout.yaml,
policies/) and applies one or two mutations: byte flips, deleted, duplicated or truncated
lines, a value swapped for another type, and the inputs that once crashed canary (NaN and
infinite durations, huge numbers, recursive aliases, alias bombs, deep nesting, custom
tags, control characters, bytes that are not UTF-8). The same seed gives the same cases.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEEDS = sorted([*REPO.glob("examples/rollouts/*.yaml"),
                *REPO.glob("examples/kubernetes/*/rollout.yaml"),
                *REPO.glob("policies/*.yaml")])

BOMB = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{y}: &{y} [{','.join(['*' + x] * 9)}]\n"
                  for x, y in zip("abcdefgh", "bcdefghi", strict=True)))
# Values that crashed `canary validate` or `canary deploy` before the YAML edge was guarded.
NASTY = [
    ".nan", ".inf", "-.inf", "3000000y", "1000000000000000", "1" * 400, "9" * 5000,
    '"2.0.0\\0"', "!custom x", "!!int abc", "!!bool maybe", "!!float nope", "2001-13-45",
    "", "[1, 2]", "{a: 1}", "null", "true", "-1", "1e400", "-0", "0x7fffffffffffffff",
    "&a [*a]", "*undefined", "!!binary aGVsbG8=", "!!set {a: null}", "!!python/tuple [1]",
    '"\\x01\\x7f"', '"\\u202e"', "x" * 300, "a" * 70000, "'" + "b" * 20 + "\\'",
    "[" * 600 + "]" * 600, "{a: " * 300 + "1" + "}" * 300, "1h" * 50, "1.5.5s", "10 m",
]
_SCALAR_LINE = re.compile(rb"^(\s*(?:- )?[A-Za-z_][A-Za-z0-9_]*:)( .*)?$")


@dataclass(frozen=True)
class Case:
    seed: Path  # the shipped file it came from
    data: bytes  # the mutated file
    mutations: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "policy" if self.seed.parent.name == "policies" else "rollout"


def cases(n: int, *, seed: int = 13) -> list[Case]:
    rng = random.Random(seed)
    originals = {p: p.read_bytes() for p in SEEDS}
    out = []
    for _ in range(n):
        path = rng.choice(SEEDS)
        data, names = originals[path], []
        for _ in range(rng.choice((1, 1, 1, 2))):
            name, mutate = rng.choice(_MUTATORS)
            data = mutate(rng, data)
            names.append(name)
        out.append(Case(seed=path, data=data, mutations=tuple(names)))
    return out


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _flip(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b))
        b[i] = rng.choice((rng.randrange(256), b[i] ^ (1 << rng.randrange(8))))
    return bytes(b)


def _delete_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def _duplicate_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return b"\n".join(lines)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data))]


def _indent(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines[i] = b"  " + lines[i] if rng.random() < 0.5 else lines[i].lstrip()
    return b"\n".join(lines)


def _scalar_lines(data: bytes) -> list[int]:
    return [i for i, line in enumerate(_lines(data)) if _SCALAR_LINE.match(line)]


def _swap_value(rng: random.Random, data: bytes) -> bytes:
    """A `key: value` line gets a nasty value, or another line's value (a type swap)."""
    lines, candidates = _lines(data), _scalar_lines(data)
    if not candidates:
        return data
    i = rng.choice(candidates)
    m = _SCALAR_LINE.match(lines[i])
    assert m is not None
    if rng.random() < 0.7:
        value = rng.choice(NASTY).encode()
    else:
        other = _SCALAR_LINE.match(lines[rng.choice(candidates)])
        assert other is not None
        value = (other.group(2) or b"").strip()
    lines[i] = m.group(1) + (b" " + value if value else b"")
    return b"\n".join(lines)


def _control(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.choice((0, 1, 7, 8, 11, 12, 27, 127))]) + data[i:]


def _latin1(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + rng.choice((b"caf\xe9", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80")) + data[i:]


def _alias(rng: random.Random, data: bytes) -> bytes:
    extra = rng.choice((BOMB, "x: &a [*a]\n", "x: &a {b: *a}\n", "x: &s 1\ny: *s\n",
                        "<<: {a: 1}\n"))
    return (data + b"\n" + extra.encode()) if rng.random() < 0.5 else extra.encode() + data


def _deep(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice((40, 65, 100, 490, 600, 5000))
    nested = rng.choice(("[" * depth + "]" * depth,
                         "".join("  " * k + "a:\n" for k in range(depth)) + "  " * depth + "1",
                         "- " * depth + "x"))
    return data + b"\nextra: " + nested.encode() if nested.startswith("[") else (
        data + b"\n" + nested.encode())


_MUTATORS = [("flip", _flip), ("delete-line", _delete_line),
             ("duplicate-line", _duplicate_line), ("truncate", _truncate), ("indent", _indent),
             ("swap-value", _swap_value), ("swap-value", _swap_value),
             ("swap-value", _swap_value), ("control-char", _control), ("not-utf8", _latin1),
             ("alias", _alias), ("deep", _deep)]
