"""What the rollout and policy files say, as the engine sees them: frozen dataclasses built
by canary/config/ (pydantic stays at that edge), read everywhere else.

Split from canary/model.py, which re-exports every name here, so ``from canary.model
import RolloutSpec`` keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from canary import defaults


@dataclass(frozen=True)
class Stage:
    """One step of a rollout (strategy.py says how each strategy becomes stages)."""

    weight: int  # percent of traffic on the canary; 0 for match and mirror stages
    pause: float  # seconds
    match: bool = False  # only the requests the router's match selects reach the canary
    mirror: int = 0  # percent of requests copied to the canary, its answers discarded

    @property
    def describe(self) -> str:
        if self.match and not self.weight:
            return "match"
        if self.mirror:
            return f"mirror {self.mirror}%"
        return f"{self.weight}%"


@dataclass(frozen=True)
class RouterSpec:
    """Which router, and its adapter-specific options (validated by the adapter's config)."""

    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MigrationSpec:
    """The gate: lint the SQL, run the migration, prove the old version still works."""

    command: tuple[str, ...] = ()
    timeout: float = defaults.GATE_TIMEOUT
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    idempotent: bool = False
    lint_paths: tuple[str, ...] = ()  # files, directories or globs of .sql
    lint_command: tuple[str, ...] = ()  # or a command printing the SQL (alembic --sql)
    lint_dialect: str = "postgres"
    compat_command: tuple[str, ...] = ()
    compat_timeout: float = defaults.GATE_TIMEOUT

    @property
    def steps(self) -> tuple[str, ...]:
        """The gate's steps in order; each one is persisted as it completes."""
        out = []
        if self.lint_paths or self.lint_command:
            out.append("lint")
        if self.command:
            out.append("migrate")
        if self.compat_command:
            out.append("compat")
        return tuple(out)


HOOK_POINTS = ("preRollout", "preStage", "postStage", "confirmPromotion", "promote",
               "postRollout", "rollback")


@dataclass(frozen=True)
class HookCall:
    """What a hook runs: an argument list, or an HTTP request (headers may hold secrets)."""

    command: tuple[str, ...] = ()
    url: str = field(default="", repr=False)
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None

    def describe(self) -> str:
        if self.command:
            return " ".join(self.command)[:200]
        host = self.url.split("/")[2] if self.url.count("/") >= 2 else "?"
        return f"{self.method} {host.rsplit('@', 1)[-1]}"  # user:password@ stays out


@dataclass(frozen=True)
class HookSpec:
    name: str
    point: str  # one of HOOK_POINTS
    call: HookCall
    timeout: float = 60.0
    retries: int = 2
    backoff: float = 1.0  # first retry delay; doubles each retry, with jitter
    compensate: HookCall | None = None  # undoes this hook when the rollout fails later


@dataclass(frozen=True)
class NotificationSpec:
    type: str  # slack | webhook | teams | pagerduty
    url: str = field(repr=False)  # a secret: never printed; "" for a Slack bot, PagerDuty
    events: tuple[str, ...] = ()  # empty: every event but stage progress
    secret_env: str | None = None  # webhook: HMAC-SHA256 key read from this variable
    # Slack bot mode (instead of ``url``): the variable holding an xoxb token, where to
    # post, and the Web API base. The token itself is read at deploy, never stored here.
    bot_token_env: str | None = None
    channel: str = ""
    # Slack bot: the Web API base; PagerDuty: the Events v2 enqueue URL. "" is the type's
    # own public endpoint (canary/notify/registry.py).
    api_url: str = ""
    # PagerDuty: the variable holding the integration's routing key (read at deploy).
    routing_key_env: str | None = None
    # event -> template text (canary/notify/templates.py); validated when the file is read.
    templates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutSpec:
    name: str
    service: str
    version: str
    stable_version: str | None
    router: RouterSpec
    stages: tuple[Stage, ...]
    policy: str  # a path or the name of a shipped policy
    migration: MigrationSpec | None = None
    notifications: tuple[NotificationSpec, ...] = ()
    hooks: tuple[HookSpec, ...] = ()
    progress_deadline: float | None = None  # seconds a stage may take before rollback
    deadline: float | None = None  # seconds the whole rollout may take
    source: str = ""  # the file it came from
    base_dir: str = "."  # relative paths (policy) resolve from here


# A label matcher of a side's selector: ("=" or "!=", value templates); several values
# mean "any of them" (rendered as a regex alternation of the escaped values).
LabelMatch = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    builtin: str | None = None  # error-rate | latency | request-rate
    query: str | None = None
    min: float | None = None
    max: float | None = None
    quantile: float = 0.99
    relative_max: float | None = None  # canary - stable must be <= this (absolute)
    relative_ratio: float | None = None  # canary / stable must be <= this
    failure_limit: int = 0
    consecutive_failure_limit: int | None = None
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    initial_delay: float = 0.0
    min_requests: float | None = None
    on_no_data: str = "inconclusive"  # inconclusive | fail
    # below minRequests: "inconclusive" whatever the value, or "pass-within-bounds" (a
    # value within the bounds passes; one over them stays inconclusive: too few to fail)
    on_low_traffic: str = "inconclusive"
    dry_run: bool = False
    family: str | None = None  # built-in series of another family than the policy's
    select: Mapping[str, Mapping[str, LabelMatch]] = field(default_factory=dict)


@dataclass(frozen=True)
class SequentialSpec:
    """Options of the sequential canary-vs-stable judge (analysis/sequential/).

    Defaults are the benchmark's choice (bench/results/judge.md): alpha 0.02 kept the
    false-rollback rate under 1% in every healthy scenario; tolerance 1.0 means "no worse
    than stable" (any regression is evidence).
    """

    alpha: float = 0.02
    tolerance: float = 1.0  # r0: canary error rate may be up to this times stable's
    latency_edges: tuple[float, ...] = ()  # restrict the latency test to these bounds
    errors: bool = True
    min_errors_per_interval_cap: float | None = None
    early_promotion: bool = False
    min_stage_requests: float = 0.0
    latency: bool = True  # judge latency when histograms are there
    warmup: float = 15.0  # seconds of canary traffic ignored at the start
    promote_tolerance: float = 1.5  # early promotion: evidence canary < this x stable


@dataclass(frozen=True)
class PolicySpec:
    name: str
    prometheus_url: str
    interval: float
    window: float
    metrics: tuple[MetricSpec, ...]
    labels: Mapping[str, str] = field(
        default_factory=lambda: {"service": "service", "version": "version", "code": "code"}
    )
    requests_metric: str = "http_requests_total"
    duration_metric: str = "http_request_duration_seconds"
    sequential: SequentialSpec | None = None
    source: str = ""
    family: str = "app"  # app | istio | linkerd | ingress-nginx | haproxy (analysis/queries.py)
    # Side ("canary", "stable") -> label -> LabelMatch; empty: the family's default selectors.
    select: Mapping[str, Mapping[str, LabelMatch]] = field(default_factory=dict)
