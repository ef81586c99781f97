"""How a rollout looks from outside: the `status -o json` object (DESIGN A.1) and text."""

from __future__ import annotations

from typing import Any

from canary.model import Event
from canary.rollout.state import RolloutState


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
    if events:
        lines.append("events:")
        for e in events:
            lines.append(f"  {e.at:%Y-%m-%d %H:%M:%S} {e.kind:<15} {e.message}")
    return "\n".join(lines)
