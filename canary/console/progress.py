"""What `canary deploy` shows: a live panel on a terminal, plain lines otherwise (CI), or
one JSON object per line (``--log-format json``) for a log collector."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from canary.console.logs import json_line
from canary.durations import format_duration
from canary.model import Event
from canary.secrets import redact_known
from canary.state import RolloutState

_QUIET_KINDS = {"analysis"}


def _fmt(v: float | None) -> str:
    return "no data" if v is None else f"{v:.4g}"


class LineReporter:
    """One line per event; analysis results one line per metric. For CI logs."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def tick(self, state: RolloutState, events: Sequence[Event]) -> None:
        for e in events:
            stamp = e.at.astimezone(UTC).strftime("%H:%M:%S")
            if e.kind == "analysis":
                for r in e.data.get("results", []):
                    dry = " (dry run)" if r.get("dryRun") else ""
                    self.out.write(f"{stamp} {state.name} analysis {r['name']}: "
                                   f"{r['outcome']} value={_fmt(r.get('value'))} "
                                   f"threshold {r.get('threshold') or '-'}{dry}\n")
            else:
                self.out.write(f"{stamp} {state.name} {e.kind}: {e.message}\n")
        self.out.flush()

    def line(self, text: str) -> None:
        self.out.write(redact_known(text) + "\n")  # a migration's output, live: no event
        self.out.flush()

    def close(self) -> None:
        return None


_WARN_KINDS = ("rolling-back", "rolled-back", "failed", "needs-human", "router-error",
               "notify-failed", "held")


class JsonLineReporter:
    """LineReporter's lines as JSON objects: time, level, rollout, stage, event, message."""

    def __init__(self, out: TextIO | None = None, *, rollout: str | None = None) -> None:
        self.out = out or sys.stdout
        self.rollout = rollout

    def tick(self, state: RolloutState, events: Sequence[Event]) -> None:
        self.rollout = state.name
        stage = state.stage_index + 1 if state.stage_index >= 0 else None
        for e in events:
            level = "warning" if e.kind in _WARN_KINDS else "info"
            if e.kind == "analysis":
                for r in e.data.get("results", []):
                    dry = " (dry run)" if r.get("dryRun") else ""
                    self._write(e.at, level, stage, "analysis",
                                f"{r['name']}: {r['outcome']} value={_fmt(r.get('value'))} "
                                f"threshold {r.get('threshold') or '-'}{dry}",
                                metric=r["name"], outcome=r["outcome"], value=r.get("value"))
            else:
                self._write(e.at, level, stage, e.kind, e.message)
        self.out.flush()

    def line(self, text: str, *, event: str = "line", level: str = "info") -> None:
        self._write(datetime.now(UTC), level, None, event, text)
        self.out.flush()

    def _write(self, at: datetime, level: str, stage: int | None, event: str, message: str,
               **extra: object) -> None:
        self.out.write(json_line(at=at, level=level, rollout=self.rollout, stage=stage,
                                 event=event, message=message, **extra) + "\n")

    def close(self) -> None:
        return None


class LiveReporter:
    """A panel redrawn every tick: phase, stage, weight, time left, last measurements."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def tick(self, state: RolloutState, events: Sequence[Event]) -> None:
        for e in events:
            if e.kind not in _QUIET_KINDS:
                self.live.console.print(f"[dim]{e.at.astimezone(UTC):%H:%M:%S}[/] "
                                        f"{e.kind}: {e.message}")
        self.live.update(render(state), refresh=True)

    def line(self, text: str) -> None:
        self.live.console.print(redact_known(text))

    def close(self) -> None:
        self.live.stop()


def render(state: RolloutState) -> Table:
    t = Table(title=f"{state.name}: {state.stable_version or '?'} -> {state.version}",
              show_header=False, expand=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("phase", state.phase.value)
    t.add_row("stage", str(state.stage_index + 1) if state.stage_index >= 0 else "-")
    t.add_row("canary weight", f"{state.actual_weight if state.actual_weight is not None else '?'}%"
              f" (wanted {state.desired_weight}%)")
    if state.pause_until is not None:
        left = (state.pause_until - datetime.now(UTC)).total_seconds()
        t.add_row("pause left", format_duration(max(0.0, left)))
    for r in state.last_results:
        t.add_row(r.name, f"{r.outcome.value}  {_fmt(r.value)}  ({r.threshold})")
    t.add_row("message", state.message)
    return t
