"""The persisted state of one rollout: everything needed to resume it exactly.

A frozen record, stored as JSON with UTC ISO times. Deadlines are absolute times, so a
restarted controller waits only for what is left of a pause. What belongs to the current
stage (StageProgress) and to the current attempt (AttemptProgress) are records of their
own, so a new stage or a retry starts from a fresh one instead of resetting fields one by
one; the stored JSON stays flat, with the keys and order it always had.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from canary.model import Command, MetricResult, Outcome, Phase


class FailureKind(enum.StrEnum):
    """Why an attempt stopped going forward; "" while nothing went wrong."""

    NONE = ""
    ANALYSIS = "analysis"  # a metric crossed its limit
    GATE = "gate"  # the migration gate failed or was interrupted
    ABORT = "abort"  # an operator aborted
    DEADLINE = "deadline"  # a stage or the rollout ran out of time
    HOOK = "hook"  # a hook failed
    INTERNAL = "internal"  # an unexpected error in a tick: held for a human


class GateStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # a migration not marked idempotent died while running


class Skip(enum.StrEnum):
    """An operator (or the judge's early promotion) promoted past analysis."""

    NONE = ""
    STAGE = "stage"  # this stage passed: its postStage hooks run, then it advances
    FULL = "full"  # every remaining stage passed: straight to promotion


@dataclass(frozen=True)
class HookKey:
    """A hook run's idempotency key, stored as "attempt/point/stage/name[#compensate]".

    A key recorded as done is never run again; the stored string form is what the hook
    executor, events and states saved by earlier versions carry."""

    attempt: int
    point: str
    stage: int  # 1-based; 0 before the first stage
    name: str
    compensate: bool = False

    SUFFIX = "#compensate"

    def __str__(self) -> str:
        return f"{self.attempt}/{self.point}/{self.stage}/{self.name}" + \
            (self.SUFFIX if self.compensate else "")

    @classmethod
    def parse(cls, text: str) -> HookKey:
        attempt, point, stage, name = text.split("/", 3)
        compensate = name.endswith(cls.SUFFIX)
        return cls(int(attempt), point, int(stage),
                   name.removesuffix(cls.SUFFIX) if compensate else name, compensate)

    def compensation(self) -> HookKey:
        return dataclasses.replace(self, compensate=True)


@dataclass(frozen=True)
class MetricCounts:
    """Counting rules per metric (Argo's): per-stage failures, consecutive runs, errors."""

    failures: int = 0
    consecutive_failures: int = 0
    inconclusive: int = 0
    consecutive_errors: int = 0
    passes: int = 0

    def after(self, outcome: Outcome) -> MetricCounts:
        failed, err = outcome is Outcome.FAILED, outcome is Outcome.ERROR
        return MetricCounts(
            failures=self.failures + failed,
            consecutive_failures=self.consecutive_failures + 1 if failed else 0,
            inconclusive=self.inconclusive + (outcome is Outcome.INCONCLUSIVE),
            consecutive_errors=self.consecutive_errors + 1 if err else 0,
            passes=self.passes + (outcome is Outcome.PASSED),
        )


@dataclass(frozen=True)
class GateProgress:
    status: GateStatus = GateStatus.PENDING
    attempts: int = 0  # runs of the current step
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    step: str = ""  # the step running or last run
    done: tuple[str, ...] = ()  # steps completed, never run again


@dataclass(frozen=True)
class StageProgress:
    """The current stage's clocks and analysis: entering a stage starts a fresh one."""

    entered_at: datetime | None = None  # when this stage began (deadline clock)
    started_at: datetime | None = None  # when the router confirmed this stage
    pause_until: datetime | None = None
    next_analysis_at: datetime | None = None
    paused_remaining: float | None = None  # seconds of pause left when an operator paused
    counts: Mapping[str, MetricCounts] = field(default_factory=dict)
    outcome: Outcome | None = None  # latest deciding outcome in this stage


@dataclass(frozen=True)
class AttemptProgress:
    """What the current attempt has come to beyond its stage: a retry starts a fresh one."""

    started_at: datetime | None = None
    skip: Skip = Skip.NONE
    promotion_confirmed: bool = False  # an operator overrode a failed confirmPromotion
    hook_running: HookKey | None = None
    last_results: tuple[MetricResult, ...] = ()
    judge_memory: Mapping[str, Any] | None = None
    reason: str = ""  # why it is rolling back / failed / aborted
    failure_kind: FailureKind = FailureKind.NONE
    needs_human: bool = False
    finished_at: datetime | None = None


# The stored JSON is flat, as it always was: sub-record fields under these names.
_STAGE_KEYS = {"stage_entered_at": "entered_at", "stage_started_at": "started_at",
               "pause_until": "pause_until", "next_analysis_at": "next_analysis_at",
               "paused_remaining": "paused_remaining", "counts": "counts",
               "stage_outcome": "outcome"}
_RUN_KEYS = {"last_results": "last_results", "judge_memory": "judge_memory",
             "hook_running": "hook_running", "skip": "skip",
             "promotion_confirmed": "promotion_confirmed", "attempt_started_at": "started_at",
             "reason": "reason", "failure_kind": "failure_kind", "needs_human": "needs_human",
             "finished_at": "finished_at"}
# The stored key order (states written before the sub-records had it too).
_KEY_ORDER = (
    "id", "name", "service", "version", "stable_version", "document", "source", "created_at",
    "updated_at", "phase", "attempt", "stage_index", "desired_weight", "stage_entered_at",
    "stage_started_at", "pause_until", "next_analysis_at", "paused_remaining", "gate",
    "counts", "stage_outcome", "last_results", "last_analysis_at", "judge_memory",
    "hooks_done", "hook_running", "skip", "promotion_confirmed", "attempt_started_at",
    "command", "reason", "failure_kind", "message", "actual_weight", "router_failures",
    "needs_human", "finished_at", "alerts_owed", "revision")


@dataclass(frozen=True)
class RolloutState:
    id: str
    name: str
    service: str
    version: str
    stable_version: str | None
    document: str  # the rollout file as written (${VAR} kept: secrets never stored)
    source: str  # where the document came from
    created_at: datetime
    updated_at: datetime
    phase: Phase = Phase.PENDING
    attempt: int = 1
    stage_index: int = -1  # -1: no traffic moved yet
    desired_weight: int = 0
    stage: StageProgress = field(default_factory=StageProgress)
    run: AttemptProgress = field(default_factory=AttemptProgress)  # the current attempt
    gate: GateProgress = field(default_factory=GateProgress)
    last_analysis_at: datetime | None = None
    hooks_done: Mapping[HookKey, bool] = field(default_factory=dict)  # -> ok, in run order
    command: Command | None = None
    message: str = ""
    actual_weight: int | None = None  # last read from the router
    router_failures: int = 0
    # Alerts decided (idempotency key -> event), saved with the decision that owes them: a
    # key without its "notified" event is still owed, and the next runner delivers it.
    alerts_owed: Mapping[str, str] = field(default_factory=dict)
    revision: int = 0

    # What the views, the server and the analyzer read, without knowing the records.
    @property
    def needs_human(self) -> bool:
        return self.run.needs_human

    @property
    def reason(self) -> str:
        return self.run.reason

    @property
    def finished_at(self) -> datetime | None:
        return self.run.finished_at

    @property
    def last_results(self) -> tuple[MetricResult, ...]:
        return self.run.last_results

    @property
    def judge_memory(self) -> Mapping[str, Any] | None:
        return self.run.judge_memory

    @property
    def pause_until(self) -> datetime | None:
        return self.stage.pause_until

    @property
    def stage_started_at(self) -> datetime | None:
        return self.stage.started_at

    def to_json(self) -> dict[str, Any]:
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("stage", "run")}
        flat |= {key: getattr(self.stage, name) for key, name in _STAGE_KEYS.items()}
        flat |= {key: getattr(self.run, name) for key, name in _RUN_KEYS.items()}
        order = [*_KEY_ORDER, *(k for k in flat if k not in _KEY_ORDER)]
        return {key: _encode(flat[key]) for key in order}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutState:
        kw: dict[str, Any] = dict(data)
        for name in ("created_at", "updated_at", "stage_started_at", "pause_until",
                     "next_analysis_at", "last_analysis_at", "finished_at", "stage_entered_at",
                     "attempt_started_at"):
            kw[name] = _time(kw.get(name))
        kw["phase"] = Phase(kw["phase"])
        kw["command"] = Command(kw["command"]) if kw.get("command") else None
        kw["stage_outcome"] = Outcome(kw["stage_outcome"]) if kw.get("stage_outcome") else None
        g = dict(kw.get("gate") or {})
        g["started_at"], g["finished_at"] = _time(g.get("started_at")), _time(g.get("finished_at"))
        g["done"] = tuple(g.get("done") or ())
        g["status"] = GateStatus(g.get("status") or GateStatus.PENDING)
        kw["gate"] = GateProgress(**g)
        kw["counts"] = {k: MetricCounts(**v) for k, v in (kw.get("counts") or {}).items()}
        kw["failure_kind"] = FailureKind(kw.get("failure_kind") or "")
        kw["skip"] = Skip(kw.get("skip") or "")
        kw["hooks_done"] = {HookKey.parse(k): bool(ok)
                            for k, ok in (kw.get("hooks_done") or {}).items()}
        running = kw.get("hook_running")
        kw["hook_running"] = HookKey.parse(running) if running else None
        kw["last_results"] = tuple(MetricResult.from_json(r) for r in kw.get("last_results") or ())
        kw["stage"] = StageProgress(**{name: kw.pop(key) for key, name in _STAGE_KEYS.items()
                                       if key in kw})
        kw["run"] = AttemptProgress(**{name: kw.pop(key) for key, name in _RUN_KEYS.items()
                                       if key in kw})
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kw.items() if k in known})


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, HookKey):
        return str(value)
    if isinstance(value, MetricResult):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value
