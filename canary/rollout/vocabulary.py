"""The machine's vocabulary: what decide() is given (plan, observation) and returns
(decision, actions), and the Step that accumulates one transition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from canary.model import Event, GateResult, HookResult, Verdict, Weights
from canary.specs import Stage
from canary.state import HookKey, RolloutState


@dataclass(frozen=True)
class MetricLimits:
    failure_limit: int = 0
    consecutive_failure_limit: int | None = None
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    dry_run: bool = False


@dataclass(frozen=True)
class Plan:
    """What the spec and policy say, reduced to what decisions need."""

    stages: tuple[Stage, ...]
    interval: float = 60.0
    gate_steps: tuple[str, ...] = ()  # lint | migrate | compat, in order
    gate_idempotent: bool = False  # the migration may run again after a crash
    limits: Mapping[str, MetricLimits] = field(default_factory=dict)
    analysis: bool = True  # False: no metrics at all, stages advance on time alone
    rollback_router_failure_limit: int = 5
    hooks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # point -> names
    compensable: frozenset[tuple[str, str]] = frozenset()  # (point, name) with compensate
    progress_deadline: float | None = None
    deadline: float | None = None
    notify_stages: bool = False  # some channel asked for per-stage progress messages


@dataclass(frozen=True)
class Observation:
    now: datetime
    weights: Weights | None = None  # None: the router could not be read
    router_error: str = ""
    gate: GateResult | None = None
    verdict: Verdict | None = None
    hook: HookResult | None = None


@dataclass(frozen=True)
class SetWeights:
    canary: int


@dataclass(frozen=True)
class RunGate:
    step: str
    attempt: int


@dataclass(frozen=True)
class Notify:
    event: str  # promoted | rolled-back | gate-failed | aborted | needs-human | held
    key: str


@dataclass(frozen=True)
class RunHook:
    key: HookKey  # the idempotency key: which hook, where, and whether it is the undo

    @property
    def point(self) -> str:
        return self.key.point

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def compensate(self) -> bool:
        return self.key.compensate


Action = SetWeights | RunGate | Notify | RunHook


@dataclass(frozen=True)
class Decision:
    state: RolloutState
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()


class Step:
    """Accumulates one transition: the new state plus what to record and do.

    Changes are ``step.state = replace(step.state, ...)``: dataclasses.replace, whose
    field names and types mypy checks."""

    def __init__(self, state: RolloutState, now: datetime) -> None:
        self.state, self.now = state, now
        self.actions: list[Action] = []
        self.events: list[Event] = []

    def event(self, kind: str, message: str, **data: object) -> None:
        self.events.append(Event(at=self.now, kind=kind, message=message, data=data))

    def notify(self, event: str) -> None:
        s = self.state
        key = f"{s.id}:{s.attempt}:{event}:{s.stage_index}"
        self.actions.append(Notify(event, key))
        if key not in s.alerts_owed:  # journal first: owed from the moment it is decided
            self.state = replace(self.state, alerts_owed={**s.alerts_owed, key: event})

    def done(self) -> Decision:
        return Decision(self.state, tuple(self.actions), tuple(self.events))
