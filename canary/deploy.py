"""Wiring for `canary deploy`: build the adapters a rollout file names, then run it.

Everything that can be refused is checked before the first write (file, policy, router
type, store URL, a conflicting active rollout), so bad input changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from canary.clock import Clock, SystemClock
from canary.errors import InputError, NotFoundError
from canary.gate.migration import lint_step, run_migration
from canary.model import Event, GateResult, MigrationSpec, PolicySpec, RolloutSpec
from canary.rollout.machine import MetricLimits, Plan
from canary.rollout.runner import Analyzer, Reporter, Runner
from canary.rollout.state import RolloutState
from canary.spec import load_policy, load_rollout, resolve_policy_path
from canary.store.base import StateStore, open_store

DEFAULT_STORE = "sqlite:///.canary/state.db"


def store_url(explicit: str | None) -> str:
    return explicit or os.environ.get("CANARY_STORE") or DEFAULT_STORE


def plan_for(spec: RolloutSpec, policy: PolicySpec) -> Plan:
    limits = {m.name: MetricLimits(failure_limit=m.failure_limit,
                                   consecutive_failure_limit=m.consecutive_failure_limit,
                                   inconclusive_limit=m.inconclusive_limit,
                                   consecutive_error_limit=m.consecutive_error_limit,
                                   dry_run=m.dry_run)
              for m in policy.metrics}
    if policy.sequential is not None:
        limits["sequential"] = MetricLimits(failure_limit=0, inconclusive_limit=10**6)
    return Plan(stages=spec.stages, interval=policy.interval,
                gate_steps=spec.migration.steps if spec.migration else (),
                gate_idempotent=bool(spec.migration and spec.migration.idempotent),
                limits=limits, analysis=bool(policy.metrics) or policy.sequential is not None)


@dataclass
class MigrationGate:
    spec: RolloutSpec
    on_line: Callable[[str], None] | None = None

    def run(self, state: RolloutState, step: str) -> GateResult:
        mig = self.spec.migration
        assert mig is not None
        cwd = self.spec.base_dir
        if step == "lint":
            return lint_step(mig, cwd=cwd, on_line=self.on_line)
        if step == "compat":
            check = MigrationSpec(command=mig.compat_command, timeout=mig.compat_timeout,
                                  env=mig.env, workdir=mig.workdir)
            result = run_migration(check, cwd=cwd, on_line=self.on_line)
            return dataclasses.replace(result, step="compat",
                                       message=result.message.replace("migration",
                                                                      "compatibility check"))
        return run_migration(mig, cwd=cwd, on_line=self.on_line)


@dataclass(frozen=True)
class Prepared:
    spec: RolloutSpec
    policy: PolicySpec
    runner: Runner
    state: RolloutState
    resumed: bool


def prepare(path: str, *, version: str | None, store: StateStore, reporter: Reporter,
            clock: Clock | None = None, on_gate_line: Callable[[str], None] | None = None,
            analyzer_factory: Callable[[PolicySpec], Analyzer] | None = None,
            poll: float = 1.0) -> Prepared:
    from canary.notify.registry import build_notifier
    from canary.routers.registry import build_router

    clock = clock or SystemClock()
    spec = load_rollout(path, version=version)
    policy = load_policy(resolve_policy_path(spec.policy, base_dir=spec.base_dir))
    router = build_router(spec.router)
    notifiers = [build_notifier(n) for n in spec.notifications]
    analyzer = (analyzer_factory or default_analyzer)(policy)
    with open(path, encoding="utf-8") as f:
        document = f.read()
    state, resumed = _find_or_create(spec, document, store, clock.now())
    runner = Runner(name=spec.name, spec=spec, plan=plan_for(spec, policy), store=store,
                    router=router, clock=clock, analyzer=analyzer,
                    gate=MigrationGate(spec, on_gate_line) if spec.migration else None,
                    notifiers=notifiers, reporter=reporter, poll=poll)
    return Prepared(spec=spec, policy=policy, runner=runner, state=state, resumed=resumed)


def default_analyzer(policy: PolicySpec) -> Analyzer:
    from canary.analysis.analyzer import PolicyAnalyzer
    from canary.metrics.prometheus import PrometheusProvider

    return PolicyAnalyzer(policy, PrometheusProvider(policy.prometheus_url,
                                                     timeout=min(10.0, policy.interval)))


def _find_or_create(spec: RolloutSpec, document: str, store: StateStore,
                    now: datetime) -> tuple[RolloutState, bool]:
    try:
        existing = store.get(spec.name)
    except NotFoundError:
        existing = None
    if existing is not None and (not existing.phase.terminal or existing.command is not None):
        if existing.version != spec.version:
            raise InputError(
                f"rollout {spec.name!r} is still active with version {existing.version} "
                f"({existing.phase.value}); resume it with --version {existing.version} or "
                f"run `canary abort {spec.name}` first", field="version")
        return existing, True
    stable = spec.stable_version or store.last_stable_version(spec.service)
    if stable == spec.version:
        raise InputError(f"version {spec.version} is already the stable version of "
                         f"{spec.service}", field="version")
    state = RolloutState(
        id=uuid.uuid4().hex, name=spec.name, service=spec.service, version=spec.version,
        stable_version=stable, document=document, source=spec.source, created_at=now,
        updated_at=now, message="created")
    created = store.create(state, events=[Event(
        at=now, kind="created",
        message=f"rollout of {spec.service} {stable or '?'} -> {spec.version} created",
        data={"stages": [s.weight for s in spec.stages]})])
    return created, False


def open_default_store(explicit: str | None) -> StateStore:
    return open_store(store_url(explicit))
