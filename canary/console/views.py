"""How a rollout looks from outside: the `status -o json` object (docs/contract.md) and text,
the `list` table and the lines `status --watch` prints.

``status`` shows the latest measurement per metric; ``history`` shows every check of the
rollout, one line per metric, so "why did it fail?" and "was it close before?" are
answered from the store alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from canary.model import Event, MetricResult
from canary.state import RolloutState


def status_json(state: RolloutState, events: list[Event]) -> dict[str, Any]:
    return {
        "name": state.name,
        "id": state.id,
        "service": state.service,
        "phase": state.phase.value,
        "stage": state.stage_index + 1,
        "canaryWeight": state.actual_weight if state.actual_weight is not None
        else state.desired_weight,
        "desiredWeight": state.desired_weight,
        "version": state.version,
        "stableVersion": state.stable_version,
        "message": state.message,
        "reason": state.reason,
        "needsHuman": state.needs_human,
        "attempt": state.attempt,
        "pendingCommand": state.command.value if state.command else None,
        "gate": {"status": state.gate.status, "attempts": state.gate.attempts,
                 "message": state.gate.message},
        "analysis": {r.name: r.to_json() for r in state.last_results},
        "lastAnalysisAt": state.last_analysis_at.isoformat() if state.last_analysis_at else None,
        "pauseUntil": state.pause_until.isoformat() if state.pause_until else None,
        "createdAt": state.created_at.isoformat(),
        "updatedAt": state.updated_at.isoformat(),
        "finishedAt": state.finished_at.isoformat() if state.finished_at else None,
        "events": [event_json(e) for e in events],
    }


def event_json(e: Event) -> dict[str, Any]:
    return {"at": e.at.isoformat(), "kind": e.kind, "message": e.message, "data": dict(e.data)}


def status_text(state: RolloutState, events: list[Event]) -> str:
    weight = state.actual_weight if state.actual_weight is not None else state.desired_weight
    lines = [
        f"rollout   {state.name} ({state.service})",
        f"versions  {state.stable_version or '?'} -> {state.version}",
        f"phase     {state.phase.value}" + ("  (needs a human)" if state.needs_human else ""),
        f"stage     {state.stage_index + 1 if state.stage_index >= 0 else '-'}",
        f"weight    {weight}% on the canary",
        f"message   {state.message}",
    ]
    if state.last_results:
        lines.append("analysis:")
        for r in state.last_results:
            value = "no data" if r.value is None else f"{r.value:.4g}"
            lines.append(f"  {r.name:<20} {r.outcome.value:<12} {value:<10} {r.threshold}"
                         f"{'  (dry run)' if r.dry_run else ''}")
            if r.message:
                lines.append(f"    {r.message}")
            if r.link:
                lines.append(f"    graph: {r.link}")
    if events:
        lines.append("events:")
        for e in events:
            lines.append(f"  {e.at:%Y-%m-%d %H:%M:%S} {e.kind:<15} {e.message}")
    return "\n".join(lines)


def history_text(state: RolloutState, events: Sequence[Event]) -> str:
    """``status_text`` plus every analysis check, each metric on one line."""
    checks = [e for e in events if e.kind == "analysis"]
    head = status_text(state, [e for e in events if e.kind != "analysis"])
    if not checks:
        return head + "\nchecks:   none"
    return head + "\n" + "\n".join(checks_text(events))


def checks_text(events: Sequence[Event]) -> list[str]:
    """Every ``analysis`` event as a block: when, at which stage, the verdict, then one
    line per metric (outcome, value, threshold) and, unless it passed, why."""
    lines = [f"checks ({sum(1 for e in events if e.kind == 'analysis')}):"]
    stage = ""
    for e in events:
        if "stage" in e.data and "weight" in e.data:
            stage = f"stage {e.data['stage']} ({e.data['weight']}%)"
        if e.kind != "analysis":
            continue
        lines.append(f"  {e.at:%Y-%m-%d %H:%M:%S}  {stage or '-':<16} "
                     f"{e.data.get('outcome', '?')}")
        for raw in e.data.get("results", []):
            lines.extend(_metric_line(raw))
    return lines


def _metric_line(raw: Mapping[str, Any]) -> list[str]:
    try:
        r = MetricResult.from_json(raw)
    except (KeyError, ValueError):
        return [f"    {raw!r}"[:200]]
    value = "no value" if r.value is None else f"{r.value:.4g}"
    line = (f"    {r.name:<20} {r.outcome.value:<12} {value:<10} {r.threshold or '-'}"
            f"{'  (dry run)' if r.dry_run else ''}")
    why = r.message.split(" (threshold ", 1)[0]
    if r.outcome.value != "passed" and why:
        return [line, f"      {why}"]
    return [line]


VERDICTS = {0: "promoted", 1: "rolled back", 3: "aborted", 4: "needs a human",
            5: "still running (stopped following at --timeout)"}


def latest_per_name(states: Sequence[RolloutState]) -> list[RolloutState]:
    """One rollout per name, the newest (``states`` newest first, as history returns them),
    sorted by name: what `canary list` shows."""
    seen: dict[str, RolloutState] = {}
    for s in states:
        seen.setdefault(s.name, s)
    return [seen[n] for n in sorted(seen)]


def age(since: datetime, now: datetime) -> str:
    """kubectl's short age: 45s, 12m, 3h, 2d."""
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _weight(state: RolloutState) -> int:
    return state.actual_weight if state.actual_weight is not None else state.desired_weight


def _phase(state: RolloutState) -> str:
    return state.phase.value + (" (needs a human)" if state.needs_human else "")


def list_json(states: Sequence[RolloutState], now: datetime) -> list[dict[str, Any]]:
    return [{"name": s.name, "service": s.service, "phase": s.phase.value,
             "needsHuman": s.needs_human, "stage": s.stage_index + 1,
             "canaryWeight": _weight(s), "version": s.version,
             "stableVersion": s.stable_version, "createdAt": s.created_at.isoformat(),
             "ageSeconds": int((now - s.created_at).total_seconds())} for s in states]


def list_text(states: Sequence[RolloutState], now: datetime) -> str:
    """One line per rollout: name, phase, stage, weight, versions, age (kubectl-style)."""
    rows = [("NAME", "PHASE", "STAGE", "WEIGHT", "VERSIONS", "AGE")]
    rows += [(s.name, _phase(s), str(s.stage_index + 1) if s.stage_index >= 0 else "-",
              f"{_weight(s)}%", f"{s.stable_version or '?'} -> {s.version}",
              age(s.created_at, now)) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)),
                                r[-1]]) for r in rows)


def progress_line(state: RolloutState, now: datetime) -> str:
    """What `status --watch` prints each time the rollout moves."""
    stage = f"stage {state.stage_index + 1}" if state.stage_index >= 0 else "no stage yet"
    line = f"{now:%H:%M:%S} {state.name}: {_phase(state)}, {stage}, {_weight(state)}% on " \
           f"{state.version}"
    return line + (f": {state.message}" if state.message else "")
