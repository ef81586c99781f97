"""Prometheus-style durations (``30s``, ``10m``, ``1h30m``), the only form our files use.

Every duration is finite, not negative and at most MAX_DURATION: the controller adds them
to the current time (pause ends, deadlines, timeouts), and ``now + 3000000y`` or
``now + nan`` would crash it after traffic had already moved.
"""

from __future__ import annotations

import math
import re

# 30 days: longer than any sane stage pause, timeout or rollout deadline, far inside what
# datetime and timedelta can add to now (year 9999), and it keeps a typo such as
# ``pause: 1000000000000000`` (seconds) from being accepted.
MAX_DURATION = 30 * 86400.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
          "y": 31536000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_EXPECTED = "expected a duration like 30s, 10m or 1h"


def parse_duration(text: object) -> float:
    """Seconds in ``text``; a bare number means seconds. Raises ValueError when malformed,
    negative, not finite or longer than MAX_DURATION (30 days)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        got = "nothing" if text is None else f"a {type(text).__name__}"
        raise ValueError(f"{_EXPECTED}, got {got}")
    if isinstance(text, int | float):
        if isinstance(text, float) and not math.isfinite(text):
            raise ValueError(f"{_EXPECTED}, got {text}")
        if text < 0:
            raise ValueError("a duration cannot be negative")
        if text > MAX_DURATION:  # int compared exactly: a 400-digit number cannot overflow
            raise ValueError(_too_long())
        return float(text)
    s = text.strip()
    if not s:
        raise ValueError(f"{_EXPECTED}, got an empty string")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]  # a huge part is inf, refused below
        pos = m.end()
    if pos != len(s):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(f"{_EXPECTED}, got {shown!r}")
    if not total <= MAX_DURATION:
        raise ValueError(_too_long())
    return total


def _too_long() -> str:
    return f"a duration can be at most {format_duration(MAX_DURATION)} (30 days)"


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
