"""Log lines of `canary serve` and `canary deploy`: text for people, JSON for collectors.

Both formats escape control characters in everything they print, so a value a client chose
(a version with a newline in it, a percent-encoded path) can never start a forged line.
The JSON format writes one object per line with the fields a collector indexes on: time,
level, rollout, stage, event and message. Callers name the rollout (and stage or event when
they know them) with ``extra=fields(rollout=...)``; a line about the controller itself
carries ``"rollout": null`` rather than leaving the key out.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_KEYS = ("rollout", "stage", "event")
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "canary_log_context", default=None)


def escape(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\n``...)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def fields(*, rollout: str | None = None, stage: int | None = None,
           event: str | None = None) -> dict[str, Any]:
    """The ``extra=`` of a log call about one rollout."""
    return {"rollout": rollout, "stage": stage, "event": event}


@contextmanager
def context(*, rollout: str, stage: int | None = None) -> Iterator[None]:
    """Lines logged inside (by any module: the runner, a router) name this rollout."""
    token = _CONTEXT.set({"rollout": rollout, "stage": stage})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def json_line(*, at: datetime, level: str, rollout: str | None, stage: int | None,
              event: str | None, message: str, **extra: Any) -> str:
    """One JSON log object on one line, in the shape JsonFormatter writes."""
    out: dict[str, Any] = {"time": at.astimezone(UTC).isoformat(timespec="milliseconds"),
                           "level": level, "rollout": rollout, "stage": stage,
                           "event": event, "message": message, **extra}
    return json.dumps(out, ensure_ascii=True, default=str)


def _message(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.exc_info and record.exc_info[0] is not None:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    return message


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # A line logged while ticking a rollout (by the runner, a router...) names it.
        rollout = getattr(record, "rollout", None) or (_CONTEXT.get() or {}).get("rollout")
        where = f" [{escape(str(rollout))}]" if rollout else ""
        head = f"{self.formatTime(record)} {record.levelname} {record.name}{where}: "
        line = head + escape(record.getMessage())
        if record.exc_info and record.exc_info[0] is not None:
            # A traceback keeps its lines, indented: none of them can pass for a log line.
            trace = self.formatException(record.exc_info).split("\n")
            line += "".join("\n    " + escape(x) for x in trace)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        around = _CONTEXT.get() or {}
        keys = {k: getattr(record, k, None) for k in _KEYS}
        keys = {k: around.get(k) if v is None else v for k, v in keys.items()}
        # ensure_ascii writes every control character as \uXXXX: one object, one line.
        return json_line(at=datetime.fromtimestamp(record.created, UTC),
                         level=record.levelname.lower(), message=_message(record),
                         logger=record.name, **keys)


def setup(fmt: str = "text", *, stream: TextIO | None = None,
          level: int = logging.INFO) -> None:
    """Route every logger (canary's, uvicorn's, apscheduler's) through one formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
