"""From measurements to decisions: dry-run metrics never decide (Verdict.combine and the
machine's counting), and `history` shows every check of a rollout the machine drove."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from canary.analysis.threshold import measure
from canary.console.views import history_text, status_json
from canary.metrics.base import Sample
from canary.model import Event, MetricResult, Outcome, Phase, Verdict, Weights
from canary.rollout.machine import MetricLimits, Observation, SetWeights, analysis_due, decide
from canary.specs import MetricSpec, PolicySpec
from canary.state import RolloutState
from tests.rollout.helpers import T0, at, new_state, plan

REAL = MetricSpec(name="error-rate", query="errors", max=0.01)
SHADOW = MetricSpec(name="p99-shadow", query="p99", max=0.1, dry_run=True)
POLICY = PolicySpec(name="p", prometheus_url="http://prom:9090", interval=10, window=10,
                    metrics=(REAL, SHADOW))
LIMITS = {"error-rate": MetricLimits(), "p99-shadow": MetricLimits(dry_run=True)}
Answers = Callable[[float], dict[str, list[Sample]]]


class ByTime:
    """A provider whose answers depend on the check's time (set before each check)."""

    def __init__(self, answers: Answers) -> None:
        self.answers, self.now = answers, 0.0

    def query(self, promql: str) -> list[Sample]:
        return self.answers(self.now).get(promql, [])


def drive(answers: Answers, *, until: float = 400) -> tuple[RolloutState, list[Event]]:
    """The runner's loop, without I/O: the router obeys, checks come when due."""
    provider, p = ByTime(answers), plan(limits=LIMITS)
    state, weight = new_state(), 0
    events: list[Event] = []
    for second in range(int(until)):
        now = at(second)
        verdict = None
        if state.phase is Phase.PROGRESSING and weight == state.desired_weight \
                and analysis_due(state, now):
            provider.now = second
            verdict = measure(POLICY, provider, service="checkout", version="2.0.0",
                              stable_version="1.0.0", at=now)
        d = decide(state, Observation(now=now, weights=Weights(weight), verdict=verdict), p)
        state, events = d.state, events + list(d.events)
        weight = next((a.canary for a in d.actions if isinstance(a, SetWeights)), weight)
        if state.phase in (Phase.PROMOTING, Phase.ROLLING_BACK, Phase.PAUSED):
            break
    return state, events


def one(value: float) -> list[Sample]:
    return [Sample({}, value)]


def shadow(t: float) -> list[Sample]:
    """The dry-run metric fails, errors out and has no data, in turns."""
    return [one(5.0), [Sample({"a": "1"}, 1.0), Sample({"a": "2"}, 1.0)], []][int(t) % 3]


def test_a_failing_dry_run_metric_never_stops_the_rollout() -> None:
    state, events = drive(lambda t: {"errors": one(0.0), "p99": shadow(t)})
    assert state.phase is Phase.PROMOTING
    checks = [e for e in events if e.kind == "analysis"]
    assert len(checks) >= 20 and all(e.data["outcome"] == "passed" for e in checks)
    seen = {r["outcome"] for e in checks for r in e.data["results"] if r["dryRun"]}
    assert seen == {"failed", "error", "inconclusive"}  # measured and recorded, every time


def test_the_deciding_metric_still_rolls_back_beside_a_passing_dry_run() -> None:
    state, _ = drive(lambda t: {"errors": one(0.5 if t > 100 else 0.0), "p99": one(0.0)})
    assert state.phase is Phase.ROLLING_BACK
    assert "error-rate" in state.reason and "p99-shadow" not in state.reason
    assert "error-rate = 0.5 is above the maximum 0.01" in state.reason


def test_an_unjudgeable_dry_run_metric_never_holds_the_rollout() -> None:
    state, _ = drive(lambda t: {"errors": one(0.0)})  # p99 never has data
    assert state.phase is Phase.PROMOTING


@pytest.mark.parametrize(("outcomes", "combined"), [
    ((("passed", False), ("failed", True)), Outcome.PASSED),
    ((("passed", False), ("error", True)), Outcome.PASSED),
    ((("inconclusive", False), ("failed", True)), Outcome.INCONCLUSIVE),
    ((("failed", False), ("passed", True)), Outcome.FAILED),
    ((("failed", True),), Outcome.INCONCLUSIVE),  # nothing deciding: never a pass
])
def test_verdict_combine_ignores_dry_run_results(outcomes: tuple[tuple[str, bool], ...],
                                                 combined: Outcome) -> None:
    results = tuple(MetricResult(name=f"m{i}", outcome=Outcome(o), value=None, query="q",
                                 dry_run=dry) for i, (o, dry) in enumerate(outcomes))
    assert Verdict.combine(results, T0).outcome is combined


def test_history_shows_every_check_with_stage_values_and_reasons() -> None:
    state, events = drive(lambda t: {"errors": one(0.5 if t > 100 else 0.0), "p99": one(0.0)})
    text = history_text(state, events)
    checks = [e for e in events if e.kind == "analysis"]
    assert f"checks ({len(checks)}):" in text
    lines = text.splitlines()
    headers = [line for line in lines if re.match(r"  2026-01-01 [\d:]{8}  stage ", line)]
    assert len(headers) == len(checks)
    assert "stage 1 (5%)" in headers[0] and "stage 2 (25%)" in text
    assert headers[-1].endswith("failed")
    assert any("error-rate" in line and "0.5" in line and "<= 0.01" in line for line in lines)
    assert any("p99-shadow" in line and "(dry run)" in line for line in lines)
    assert "      error-rate = 0.5 is above the maximum 0.01" in text  # why, for a failure
    assert "analysis passed" not in text  # checks are not repeated among the events
    assert "rollout   checkout" in text


def test_status_json_carries_the_link_and_history_without_checks() -> None:
    state, events = drive(lambda t: {"errors": one(0.0), "p99": one(0.0)}, until=12)
    assert status_json(state, events)["analysis"]["error-rate"]["link"].startswith(
        "http://prom:9090/graph?g0.expr=errors")
    assert history_text(new_state(), []).endswith("checks:   none")
