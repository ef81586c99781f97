"""Prometheus-style durations (``30s``, ``10m``, ``1h30m``), the only form our files use."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
          "y": 31536000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``text``; a bare number means seconds. Raises ValueError when malformed."""
    if isinstance(text, bool):
        raise ValueError("expected a duration like 30s, 10m or 1h")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    s = text.strip()
    if not s:
        raise ValueError("expected a duration like 30s, 10m or 1h, got an empty string")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"expected a duration like 30s, 10m or 1h, got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """Short, Prometheus-style rendering: 90 -> '1m30s', 0.5 -> '500ms'."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    rest = int(round(seconds))
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"
