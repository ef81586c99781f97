"""Wiring for `canary deploy`: build the adapters a rollout file names, then run it.

Everything that can be refused is checked before the first write (file, policy, router
type, store URL, a conflicting active rollout), so bad input changes nothing. Deploying the
version whose rollout just ended (a CI retry after a kill) starts nothing: it reports that
ending and delivers what is owed (``ended_with``); the API's submit shares the rule.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from canary import defaults
from canary.clock import Clock, SystemClock
from canary.config.spec import load_policy, parse_rollout_text, resolve_policy_path
from canary.config.yamlsource import read_text
from canary.errors import InputError, NotFoundError, RouterError
from canary.gate.migration import lint_step, run_migration
from canary.model import Event, GateResult
from canary.rollout.machine import MetricLimits, Plan
from canary.rollout.runner import Analyzer, Reporter, Runner
from canary.rollout.threads import StoreThreads
from canary.specs import MigrationSpec, PolicySpec, RolloutSpec
from canary.state import RolloutState
from canary.store.base import StateStore
from canary.store.registry import open_store

DEFAULT_STORE = defaults.STORE_URL


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
                limits=limits, analysis=bool(policy.metrics) or policy.sequential is not None,
                hooks={p: tuple(h.name for h in spec.hooks if h.point == p)
                       for p in {h.point for h in spec.hooks}},
                compensable=frozenset((h.point, h.name) for h in spec.hooks if h.compensate),
                progress_deadline=spec.progress_deadline, deadline=spec.deadline,
                notify_stages=any("stage" in n.events for n in spec.notifications))


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

    @property
    def ended(self) -> bool:
        """The same version already ended: running it only delivers what is owed."""
        return ended_with(self.state, self.spec.version)


def load_specs(text: str, *, file: str, version: str | None,
               env: Mapping[str, str] | None = None) -> tuple[RolloutSpec, PolicySpec]:
    """The rollout and its policy, validated; InputError names file, line and field."""
    spec = parse_rollout_text(text, file=file, version=version, env=env)
    policy = load_policy(resolve_policy_path(spec.policy, base_dir=spec.base_dir), env=env)
    return spec, policy


def build_runner(spec: RolloutSpec, policy: PolicySpec, *, store: StateStore,
                 clock: Clock | None = None, reporter: Reporter | None = None,
                 on_gate_line: Callable[[str], None] | None = None,
                 analyzer_factory: Callable[[PolicySpec], Analyzer] | None = None,
                 poll: float = 1.0) -> Runner:
    from canary.notify.registry import build_notifier
    from canary.routers.registry import build_router

    clock = clock or SystemClock()
    threads = StoreThreads(store, clock)  # Slack bot threads survive a restart
    runner = Runner(name=spec.name, spec=spec, plan=plan_for(spec, policy), store=store,
                    router=build_router(spec.router), clock=clock,
                    analyzer=(analyzer_factory or default_analyzer)(policy),
                    gate=MigrationGate(spec, on_gate_line) if spec.migration else None,
                    notifiers=[build_notifier(n, threads=threads) for n in spec.notifications],
                    poll=poll)
    if reporter is not None:
        runner.reporter = reporter
    return runner


def submit(text: str, *, file: str, version: str | None, store: StateStore,
           now: datetime, preflight: bool = False
           ) -> tuple[RolloutSpec, PolicySpec, RolloutState, bool]:
    """Validate a rollout document and create its rollout, or find the active one.

    With ``preflight``, a new rollout is refused before anything is stored when a query of
    its policy cannot work (InputError, exit 2) or its Prometheus does not answer
    (MetricsError, exit 4). A rollout being resumed is never refused: it may have traffic
    on the canary, and only a running controller can take it back.
    """
    spec, policy = load_specs(text, file=file, version=version)
    from canary.routers.registry import build_router

    router = build_router(spec.router)  # refuse bad router options before anything is stored
    latest = _latest(spec.name, store)
    if latest is not None and ended_with(latest, spec.version):
        # The same deploy again (a CI retry after a kill): report that ending, start nothing.
        return spec, policy, latest, True
    if preflight and not (latest is not None and _is_active(latest)):
        from canary.rollout.preflight import preflight_policy, refuse

        try:
            # The router's backend, servers or route must exist before a rollout that
            # would drive them is stored: a typo is exit 2 now, not a rollback later.
            router.ensure()
        except RouterError as exc:
            raise InputError(f"the router is not usable ({router.describe()}): {exc}",
                             field="spec.router") from exc

        stable = spec.stable_version or store.last_stable_version(spec.service)
        refuse(preflight_policy(policy, service=spec.service, version=spec.version,
                                stable_version=stable), file=file)
    state, resumed = _find_or_create(spec, text, store, now)
    return spec, policy, state, resumed


def _latest(name: str, store: StateStore) -> RolloutState | None:
    try:
        return store.get(name)
    except NotFoundError:
        return None


def _is_active(state: RolloutState) -> bool:
    return not state.phase.terminal or state.command is not None


def ended_with(latest: RolloutState, version: str) -> bool:
    """The latest rollout of a name ended with this very version: deploying it again is a
    no-op that reports that ending (exit 0/1/3/4), never a new rollout moving traffic back
    to the first stage. A new rollout takes a new version or an explicit `canary retry`."""
    return latest.phase.terminal and latest.command is None and latest.version == version


def runner_for_state(state: RolloutState, *, store: StateStore, clock: Clock | None = None,
                     reporter: Reporter | None = None, poll: float = 1.0,
                     analyzer_factory: Callable[[PolicySpec], Analyzer] | None = None
                     ) -> Runner:
    """Rebuild a rollout's runner from the document stored with it (`canary serve`)."""
    spec, policy = load_specs(state.document, file=state.source, version=state.version)
    return build_runner(spec, policy, store=store, clock=clock, reporter=reporter, poll=poll,
                        analyzer_factory=analyzer_factory)


def prepare(path: str, *, version: str | None, store: StateStore, reporter: Reporter,
            clock: Clock | None = None, on_gate_line: Callable[[str], None] | None = None,
            analyzer_factory: Callable[[PolicySpec], Analyzer] | None = None,
            poll: float = 1.0, preflight: bool = True) -> Prepared:
    clock = clock or SystemClock()
    text = read_text(path)  # UTF-8 only and size-capped, like every document
    # Preflight asks the policy's Prometheus: only when that is what will be measured.
    spec, policy, state, resumed = submit(
        text, file=path, version=version, store=store, now=clock.now(),
        preflight=preflight and analyzer_factory is None)
    runner = build_runner(spec, policy, store=store, clock=clock, reporter=reporter,
                          on_gate_line=on_gate_line, analyzer_factory=analyzer_factory,
                          poll=poll)
    return Prepared(spec=spec, policy=policy, runner=runner, state=state, resumed=resumed)


def default_analyzer(policy: PolicySpec) -> Analyzer:
    from canary.analysis.analyzer import PolicyAnalyzer
    from canary.metrics.prometheus import PrometheusProvider

    return PolicyAnalyzer(policy, PrometheusProvider(policy.prometheus_url,
                                                     timeout=min(10.0, policy.interval)))


def _find_or_create(spec: RolloutSpec, document: str, store: StateStore,
                    now: datetime) -> tuple[RolloutState, bool]:
    existing = _latest(spec.name, store)
    if existing is not None and (_is_active(existing) or ended_with(existing, spec.version)):
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
