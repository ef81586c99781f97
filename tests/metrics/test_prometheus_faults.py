"""The live judge with a real Prometheus behind a proxy that is slow, answers 5xx, or flaps.

A check Prometheus could not answer is an ERROR and changes nothing in the judge's memory,
so the next check that gets through measures the whole span since the last good one:
nothing is lost, nothing is counted twice (the fed requests equal the counters' growth
between the first and last evaluation times, read directly). A flapping Prometheus makes
checks late and inconclusive, never a rollback of a healthy canary, never a promotion of a
faulty one.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from canary.analysis.sequential.live import LiveSequential
from canary.config.spec import load_policy
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Outcome
from lab.load import Load

from .accounting_lab import AccountingLab, running_accounting_lab
from .fault_proxy import FaultProxy, running_proxy

pytestmark = pytest.mark.servers  # a real Prometheus and lab apps

SELECTOR = 'http_requests_total{{service="checkout",version="{v}"}}'


@dataclass
class Faulty:
    lab: AccountingLab
    proxy: FaultProxy
    direct: PrometheusProvider


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed")
    apps = {"1.0.0": 0.01, "2.0.0": 0.01, "3.0.0": 0.08}
    with running_accounting_lab(tmp_path_factory.mktemp("faults"), apps) as lab:
        loads = [Load(f"{a.info['url']}/", rps=50).start() for a in lab.apps.values()]
        try:
            with running_proxy(lab.prometheus_url) as proxy, \
                    PrometheusProvider(lab.prometheus_url) as direct:
                time.sleep(3)
                yield Faulty(lab=lab, proxy=proxy, direct=direct)
        finally:
            for load in loads:
                load.stop()


@dataclass
class Run:
    outcomes: list[Outcome]
    ats: list[float]  # evaluation times of the checks that got through
    memory: dict[str, Any] | None
    early: bool


def checks(env: Faulty, *, canary: str, n: int, memory: dict[str, Any] | None = None,
           stop_on_failure: bool = True) -> Run:
    """``n`` checks 2 s apart through the proxy, memory persisted through JSON as the
    store does; a check that answers no memory leaves the persisted one as it was."""
    policy = load_policy(str(env.lab.policy))
    with PrometheusProvider(env.proxy.url, timeout=1.0) as provider:
        live = LiveSequential(policy, provider)
        run = Run(outcomes=[], ats=[], memory=memory, early=False)
        for i in range(n):
            if i:
                time.sleep(2.0)
            results, new, early = live.check(run.memory, service="checkout", version=canary,
                                             stable_version="1.0.0", stage=0)
            run.outcomes.append(results[0].outcome)
            run.early = run.early or early
            if new is not None:
                run.memory = json.loads(json.dumps(new))
                run.ats.append(float(new["live"]["at"]))
            if stop_on_failure and results[0].outcome is Outcome.FAILED:
                break
    return run


def counted(env: Faulty, version: str, at: float) -> float:
    """The version's request counters at ``at``, read directly (no reset in this lab)."""
    series = env.direct.series_at(SELECTOR.format(v=version), at=at, window=30)
    return sum(s.points[-1][1] for s in series if s.points)


def assert_each_span_once(env: Faulty, run: Run, version: str) -> None:
    assert run.memory is not None
    first = run.ats[0] - 2.0  # the first check's baseline: one interval back
    truth = counted(env, version, run.ats[-1]) - counted(env, version, first)
    fed = run.memory["live"]["fed"]["canary"]
    print(f"{version}: fed {fed:g} vs counters' growth {truth:g} over "
          f"{run.ats[-1] - first:.1f}s, {run.memory['live']['fed']['spans']} spans")
    assert truth > 0 and fed == pytest.approx(truth, rel=1e-9)
    assert run.memory["live"]["fed"]["spans"] == len(run.ats)


def test_flapping_prometheus_never_rolls_back_a_healthy_canary(env: Faulty) -> None:
    env.proxy.set("flap", period=3.0)
    try:
        run = checks(env, canary="2.0.0", n=14)
    finally:
        env.proxy.set("ok")
    print("outcomes:", [o.value for o in run.outcomes])
    assert Outcome.FAILED not in run.outcomes and not run.early
    assert Outcome.ERROR in run.outcomes  # the fault was real
    assert Outcome.PASSED in run.outcomes  # and checks got through, late
    assert_each_span_once(env, run, "2.0.0")
    spans = [b - a for a, b in zip(run.ats, run.ats[1:], strict=False)]
    assert max(spans) > 3.0  # a check after failed ones measured the longer span


def test_flapping_prometheus_never_promotes_a_faulty_canary(env: Faulty) -> None:
    env.proxy.set("flap", period=3.0)
    try:
        run = checks(env, canary="3.0.0", n=30)
    finally:
        env.proxy.set("ok")
    print("outcomes:", [o.value for o in run.outcomes])
    assert not run.early
    assert Outcome.ERROR in run.outcomes
    assert run.outcomes[-1] is Outcome.FAILED  # rolled back, late
    assert_each_span_once(env, run, "3.0.0")


@pytest.mark.parametrize("mode", ["slow", "5xx"])
def test_a_slow_or_failing_prometheus_loses_no_span(env: Faulty, mode: str) -> None:
    good = checks(env, canary="2.0.0", n=2)
    assert Outcome.ERROR not in good.outcomes
    env.proxy.set(mode, delay=1.5)  # slower than the provider's 1 s timeout
    try:
        bad = checks(env, canary="2.0.0", n=3, memory=good.memory)
    finally:
        env.proxy.set("ok")
    assert bad.outcomes == [Outcome.ERROR] * 3 and bad.memory == good.memory
    time.sleep(2.0)
    after = checks(env, canary="2.0.0", n=1, memory=good.memory)
    assert after.outcomes[0] is not Outcome.ERROR
    run = Run(outcomes=[], ats=good.ats + after.ats, memory=after.memory, early=False)
    assert run.ats[-1] - run.ats[-2] > 6.0  # one span over the whole outage
    assert_each_span_once(env, run, "2.0.0")
