"""Values every layer shares: phases, commands, weights, results, verdicts, events.

Frozen dataclasses, no I/O. Pydantic stays at the YAML edge (spec.py); these are what the
rest of the code sees. The specs as loaded (rollout, stages, hooks, policy, metrics) are in
canary/specs.py.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from canary.secrets import redact_data, redact_known


class Phase(enum.StrEnum):
    PENDING = "pending"
    GATING = "gating"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTING = "promoting"
    ROLLING_BACK = "rolling-back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED)


class Outcome(enum.StrEnum):
    """Argo's four: the metric is fine, is bad, cannot tell, or could not be measured."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


class Command(enum.StrEnum):
    """Operator intent, recorded in the store and acted on by the running controller."""

    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    RETRY = "retry"

    @property
    def applies_in(self) -> frozenset[Phase]:
        """The phases this command acts in: the one rule, for the machine that acts on it
        and for recording it (CLI and API), so they cannot drift apart."""
        return COMMAND_PHASES[self]


_LIVE = frozenset({Phase.PENDING, Phase.GATING, Phase.PROGRESSING, Phase.PAUSED,
                   Phase.PROMOTING})
COMMAND_PHASES: dict[Command, frozenset[Phase]] = {
    Command.ABORT: _LIVE,  # anything not ended and not already rolling back
    Command.RESUME: _LIVE,  # only acts when paused; accepted earlier so it is not lost
    # the gate is never skipped, and a command must not swallow the gate's result
    Command.PAUSE: frozenset({Phase.PROGRESSING, Phase.PAUSED}),
    Command.PROMOTE: frozenset({Phase.PROGRESSING, Phase.PAUSED}),
    Command.PROMOTE_FULL: frozenset({Phase.PROGRESSING, Phase.PAUSED}),
    Command.RETRY: frozenset({Phase.FAILED, Phase.ABORTED}),
}


@dataclass(frozen=True)
class Weights:
    """Traffic split in percent; always sums to 100."""

    canary: int

    def __post_init__(self) -> None:
        if not 0 <= self.canary <= 100:
            raise ValueError(f"canary weight must be 0..100, got {self.canary}")

    @property
    def stable(self) -> int:
        return 100 - self.canary


@dataclass(frozen=True)
class HookResult:
    key: str
    ok: bool
    message: str
    output: str = ""
    attempts: int = 1

    def __post_init__(self) -> None:
        # A hook's text is stored and alerted: secrets from ${VAR} are masked here.
        object.__setattr__(self, "message", redact_known(self.message))
        object.__setattr__(self, "output", redact_known(self.output))


@dataclass(frozen=True)
class MetricResult:
    """One metric at one check: what was asked, what came back, how it was judged."""

    name: str
    outcome: Outcome
    value: float | None
    query: str
    threshold: str = ""  # human form, e.g. "<= 0.01"
    message: str = ""
    dry_run: bool = False
    link: str = ""  # the query graphed in Prometheus over the window before the check

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome.value,
            "value": _finite(self.value),
            "threshold": self.threshold,
            "query": self.query,
            "message": self.message,
            "dryRun": self.dry_run,
            "link": self.link,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MetricResult:
        return cls(
            name=d["name"],
            outcome=Outcome(d["outcome"]),
            value=_unfinite(d.get("value")),
            query=d.get("query", ""),
            threshold=d.get("threshold", ""),
            message=d.get("message", ""),
            dry_run=bool(d.get("dryRun", False)),
            link=d.get("link", ""),
        )


def _finite(value: float | None) -> float | str | None:
    """JSON has no infinities: a p99 above the highest bucket is stored as "+Inf"."""
    if value is None or value != value:  # NaN: no data
        return None
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return value


def _unfinite(value: Any) -> float | None:
    if isinstance(value, str):
        return float(value.replace("+Inf", "inf").replace("-Inf", "-inf"))
    return None if value is None else float(value)


@dataclass(frozen=True)
class Verdict:
    """The combined result of one analysis check; as bad as its worst deciding metric."""

    outcome: Outcome
    results: tuple[MetricResult, ...]
    at: datetime
    memory: Mapping[str, Any] | None = None  # judge state to persist (sequential judge)
    promote_stage: bool = False  # the judge has evidence enough to end the stage early

    @staticmethod
    def combine(results: tuple[MetricResult, ...], at: datetime) -> Verdict:
        deciding = [r.outcome for r in results if not r.dry_run]
        order = (Outcome.FAILED, Outcome.ERROR, Outcome.INCONCLUSIVE, Outcome.PASSED)
        outcome = next((o for o in order if o in deciding), Outcome.INCONCLUSIVE)
        return Verdict(outcome=outcome, results=results, at=at)


@dataclass(frozen=True)
class GateResult:
    ok: bool
    message: str
    output: str = ""
    timed_out: bool = False
    step: str = "migrate"  # lint | migrate | compat

    def __post_init__(self) -> None:
        # A migration's text is stored and shown: secrets from ${VAR} are masked here.
        object.__setattr__(self, "message", redact_known(self.message))
        object.__setattr__(self, "output", redact_known(self.output))


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None  # idempotency key: an event with a key is recorded once

    def __post_init__(self) -> None:
        # Every event of every store is made here: secrets from ${VAR} are masked once,
        # whichever adapter wrote the text (see canary/secrets.py).
        object.__setattr__(self, "message", redact_known(self.message))
        object.__setattr__(self, "data", redact_data(self.data))


@dataclass(frozen=True)
class Notification:
    """What a notifier sends: one event of one rollout, with everything to act on it."""

    event: str  # promoted | rolled-back | gate-failed | aborted | needs-human | held | ...
    rollout: str
    service: str
    version: str
    stable_version: str | None
    stage: int  # 1-based stage reached, 0 before any traffic
    weight: int
    reason: str
    results: tuple[MetricResult, ...] = ()
    key: str = ""
    # Which run of which rollout this belongs to: a Slack bot threads every message of one
    # run under its first. Empty when sent outside a runner (a test, a one-off alert).
    rollout_id: str = ""
    attempt: int = 0

    def __post_init__(self) -> None:
        # Every alert (Slack, webhook, any notifier to come) is built here.
        object.__setattr__(self, "reason", redact_known(self.reason))


