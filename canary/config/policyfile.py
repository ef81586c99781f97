"""Analysis policy files (docs/contract.md): YAML in, a validated PolicySpec out.

Every query is rendered once at load, so a template that cannot render is refused with
its line before any rollout starts. Shipped policies are found by name in policies/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    WithJsonSchema,
    model_validator,
)

from canary.config.specbase import MAX_COUNT, Count, Duration, Name, _Metadata, _Model, _validate
from canary.config.yamlsource import Document, interpolate, load_file
from canary.errors import InputError
from canary.specs import MetricSpec, PolicySpec, SequentialSpec

BUILTINS = ("error-rate", "latency", "request-rate")
FamilyName = Literal["app", "istio", "linkerd", "ingress-nginx", "haproxy"]
_LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
_HERE = Path(__file__).resolve().parents[1]  # the canary package
# The top-level policies/ is the source; an installed wheel carries it as canary/policies
# (pyproject.toml maps it), a checkout or an editable install reads the source itself.
PACKAGE_POLICIES = (_HERE / "policies" if (_HERE / "policies").is_dir()
                    else _HERE.parent / "policies")


def _label_match(value: Any) -> Any:
    """A side's label value in YAML: ``x`` (equal), ``[x, y]`` (any of), ``{not: x}``."""
    negate = isinstance(value, dict)
    if negate:
        if set(value) != {"not"}:
            raise ValueError("expected a value, a list of values, or {not: value}")
        value = value["not"]
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                             for v in values):
        raise ValueError("expected a label value (text), a non-empty list of them, or "
                         "{not: value}")
    return ("!=" if negate else "=", tuple(str(v) for v in values))


_MatchSchema = {"anyOf": [
    {"type": ["string", "number"]},
    {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 1},
    {"type": "object", "properties": {"not": {"anyOf": [
        {"type": ["string", "number"]},
        {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 1}]}},
     "required": ["not"], "additionalProperties": False}]}
_Match = Annotated[tuple[str, tuple[str, ...]], BeforeValidator(_label_match),
                   WithJsonSchema(_MatchSchema)]


class _Select(_Model):
    """Label matchers that pick each side's series, for proxies without a version label."""

    canary: dict[_LabelName, _Match] = Field(min_length=1)
    stable: dict[_LabelName, _Match] = Field(min_length=1)


class _Metric(_Model):
    name: Name
    builtin: Literal["error-rate", "latency", "request-rate"] | None = None
    query: str | None = None
    family: FamilyName | None = None
    select: _Select | None = None
    min: float | None = None
    max: float | None = None
    quantile: float | None = Field(default=None, gt=0, lt=1)
    relative_max: float | None = Field(default=None, alias="relativeMax", ge=0)
    relative_ratio: float | None = Field(default=None, alias="relativeRatio", gt=0)
    failure_limit: Count = Field(default=0, alias="failureLimit")
    consecutive_failure_limit: Count | None = Field(default=None,
                                                    alias="consecutiveFailureLimit")
    inconclusive_limit: Count = Field(default=0, alias="inconclusiveLimit")
    consecutive_error_limit: int = Field(default=4, alias="consecutiveErrorLimit", ge=1,
                                         le=MAX_COUNT)
    initial_delay: Duration = Field(default=0.0, alias="initialDelay")
    min_requests: float | None = Field(default=None, alias="minRequests", ge=0)
    on_no_data: Literal["inconclusive", "fail"] = Field(default="inconclusive", alias="onNoData")
    on_low_traffic: Literal["inconclusive", "pass-within-bounds"] = Field(
        default="inconclusive", alias="onLowTraffic")
    dry_run: bool = Field(default=False, alias="dryRun")

    @model_validator(mode="after")
    def _check(self) -> _Metric:
        if (self.builtin is None) == (self.query is None):
            raise ValueError("give exactly one of 'builtin' or 'query'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if (self.min is None and self.max is None and self.relative_max is None
                and self.relative_ratio is None):
            raise ValueError("a metric needs a threshold: min, max, relativeMax or relativeRatio")
        return self


class _Prometheus(_Model):
    url: str = Field(pattern=r"^https?://")


class _Sequential(_Model):
    alpha: float = Field(default=0.02, gt=0, lt=0.5)
    tolerance: float = Field(default=1.0, ge=1)
    latency: bool = True
    warmup: Duration = 15.0
    promote_tolerance: float = Field(default=1.5, alias="promoteTolerance", gt=1)
    latency_edges: list[float] = Field(default_factory=list, alias="latencyEdges")
    errors: bool = True
    interval_cap: float | None = Field(default=None, alias="intervalCap", gt=0)
    early_promotion: bool = Field(default=False, alias="earlyPromotion")
    min_stage_requests: float = Field(default=0.0, alias="minStageRequests", ge=0)


class _PolicySpec(_Model):
    prometheus: _Prometheus = _Prometheus(url="http://127.0.0.1:9090")
    interval: Duration = 60.0
    window: Duration = 60.0
    family: FamilyName = "app"
    labels: dict[Literal["service", "version", "code", "le"], _LabelName] = Field(
        default_factory=dict)
    select: _Select | None = None
    requests_metric: str | None = Field(default=None, alias="requestsMetric")
    duration_metric: str | None = Field(default=None, alias="durationMetric")
    metrics: list[_Metric] = Field(default_factory=list)
    sequential: _Sequential | None = None

    @model_validator(mode="after")
    def _check(self) -> _PolicySpec:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique: {', '.join(dupes)}")
        if self.interval <= 0 or self.window <= 0:
            raise ValueError("interval and window must be positive")
        return self


class _Policy(_Model):
    api_version: Literal["canary/v1"] = Field(alias="apiVersion")
    kind: Literal["AnalysisPolicy"]
    metadata: _Metadata
    spec: _PolicySpec


def load_policy(path: str, *, env: Mapping[str, str] | None = None) -> PolicySpec:
    """A policy file, validated; InputError names file, line and field.

    Beyond the fields' own checks, thresholds must make sense for what they bound, limits
    must be reachable, and every metric's queries must render (placeholders, label and
    metric names, each family's needs), so a policy that validates can run.
    """
    from canary.analysis.families import FAMILIES

    raw = load_file(path)
    if not isinstance(raw.data, dict):
        raise raw.error("expected a mapping with apiVersion, kind, metadata, spec", ())
    from canary.secrets import register_environment_values  # ${VAR} = secret

    doc = interpolate(raw, env)
    register_environment_values(raw.data, doc.data, os.environ if env is None else env)
    try:
        m: _Policy = _validate(_Policy, doc, doc.data)
    except InputError as exc:  # a refused mapping key: name the key, not pydantic's "[key]"
        if not (exc.field or "").endswith(".[key]"):
            raise
        raise InputError(exc.message, file=exc.file, line=exc.line,
                         field=(exc.field or "")[:-len(".[key]")]) from None
    s = m.spec
    problem = _policy_problem(s)
    if problem is not None:
        raise doc.error(problem[0], ("spec", *problem[1]))
    family = FAMILIES[s.family]
    labels = {**family.labels, "le": "le", **{str(k): v for k, v in s.labels.items()}}
    seq = s.sequential
    policy = PolicySpec(
        name=m.metadata.name, prometheus_url=s.prometheus.url, interval=s.interval,
        window=s.window, labels=labels, family=s.family,
        select=dict(s.select.model_dump()) if s.select else {},
        requests_metric=s.requests_metric or family.requests,
        duration_metric=s.duration_metric or family.duration, source=path,
        metrics=tuple(_metric_spec(x) for x in s.metrics),
        sequential=None if seq is None else SequentialSpec(
            alpha=seq.alpha, tolerance=seq.tolerance, latency_edges=tuple(seq.latency_edges),
            errors=seq.errors, min_errors_per_interval_cap=seq.interval_cap,
            early_promotion=seq.early_promotion, min_stage_requests=seq.min_stage_requests,
            latency=seq.latency, warmup=seq.warmup, promote_tolerance=seq.promote_tolerance))
    _check_renders(policy, doc)
    return policy


def _metric_spec(x: _Metric) -> MetricSpec:
    fields = x.model_dump(by_alias=False, exclude={"quantile", "select"})
    return MetricSpec(**fields, quantile=0.99 if x.quantile is None else x.quantile,
                      select=dict(x.select.model_dump()) if x.select else {})


_SIDELESS = ("haproxy", "ingress-nginx")  # no version label: the sides are told by select


def _policy_problem(s: _PolicySpec) -> tuple[str, tuple[str | int, ...]] | None:
    """The first threshold, limit or family setting that cannot work, and where it is."""
    if s.metrics and all(x.dry_run for x in s.metrics) and s.sequential is None:
        return ("every metric is dryRun: no check could ever pass a stage, so the rollout "
                "would wait for its deadline; make one metric decide, or remove metrics to "
                "run without analysis", ("metrics",))
    if s.family in _SIDELESS and "version" in s.labels:
        return (f"the {s.family} family has no version label: it tells canary from stable "
                "with select (canary: ..., stable: ...)", ("labels", "version"))
    for i, x in enumerate(s.metrics):
        family = x.family or s.family
        at: tuple[str | int, ...] = ("metrics", i)
        bounds = {"min": x.min, "max": x.max}
        if x.builtin is not None:
            for key, bound in bounds.items():
                if bound is not None and bound < 0:
                    return (f"{x.builtin} is never negative; {key} {bound:g} cannot be "
                            "meant", (*at, key))
        if x.builtin == "error-rate":
            for key, bound in bounds.items():
                if bound is not None and bound > 1:
                    return (f"error-rate is a share between 0 and 1 (1% is 0.01), got "
                            f"{bound:g}", (*at, key))
        if x.builtin == "request-rate" and (x.relative_max is not None
                                            or x.relative_ratio is not None):
            key = "relativeMax" if x.relative_max is not None else "relativeRatio"
            return ("request-rate follows the traffic split, not the canary's health: "
                    "compare it with min or max, not with stable", (*at, key))
        if (x.consecutive_failure_limit is not None
                and x.consecutive_failure_limit >= x.failure_limit):
            return (f"can never be reached: failureLimit ({x.failure_limit}) rolls back "
                    f"first, after {x.failure_limit + 1} failures in any order; raise "
                    "failureLimit above it", (*at, "consecutiveFailureLimit"))
        if x.builtin == "latency" and family == "haproxy" and x.quantile is not None:
            return ("HAProxy exports no latency histogram, only a mean per server: a "
                    "quantile cannot apply; remove it", (*at, "quantile"))
    return None


def _check_renders(policy: PolicySpec, doc: Document) -> None:
    """Render every query once with stand-in values: errors point into the file."""
    from canary.analysis.queries import SIDES, render_metric_query, request_count_query

    for i, m in enumerate(policy.metrics):
        try:
            for side in SIDES:
                render_metric_query(m, policy, service="s", version="v", stable_version="v0",
                                    side=side)
            if m.min_requests is not None:
                request_count_query(policy, service="s", version="v", metric=m,
                                    stable_version="v0")
        except InputError as exc:
            path = _spec_path(exc.field or "", i, m.name)
            if path == ("spec", "select") and path not in doc.lines:  # missing: show family
                raise InputError(exc.message, file=doc.file, field="spec.select",
                                 line=doc.line_of(("spec", "family"))) from None
            raise doc.error(exc.message, path) from None


def _spec_path(field: str, index: int, name: str) -> tuple[str | int, ...]:
    """A query renderer's field (``metrics.<name>.query``, ``labels.code``) as a file path."""
    own = f"metrics.{name}"
    if field == own or field.startswith(own + "."):
        rest = field[len(own) + 1:]
        return ("spec", "metrics", index, *(rest.split(".") if rest else ()))
    return ("spec", *field.split("."))


def resolve_policy_path(ref: str, *, base_dir: str) -> str:
    """A path (relative to the rollout file), or the name of a policy: the rollout's own
    policies/, the working directory's, each directory of $CANARY_POLICY_PATH (the user's
    own), then the ones shipped with canary."""
    candidates = [Path(base_dir) / ref, Path(ref)]
    if "/" not in ref and not ref.endswith((".yaml", ".yml")):
        extra = [Path(p) for p in os.environ.get("CANARY_POLICY_PATH", "").split(":") if p]
        for root in (Path(base_dir) / "policies", Path.cwd() / "policies", *extra,
                     PACKAGE_POLICIES):
            candidates.append(root / f"{ref}.yaml")
    for c in candidates:
        try:
            if c.is_file():
                return str(c)
        except (OSError, ValueError):  # a name too long for the file system, a NUL
            continue
    where = f" (looked in {', '.join(str(c) for c in candidates)})"
    if len(ref) > 80:  # the name is in every candidate: say it once, shortened
        ref, where = ref[:80] + "...", ""
    raise InputError(f"analysis policy {ref!r} not found{where}", field="spec.analysis.policy")


