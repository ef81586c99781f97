"""``canary backtest``: one answer per recording, in the A.5 output format."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from canary.analysis.sequential.core import SequentialJudge, VersionCounts
from canary.errors import InputError
from canary.replay.backtest import backtest_files, backtest_recording
from canary.replay.recording import Point, Recording, load_recording
from canary.specs import MetricSpec, PolicySpec, SequentialSpec

DATA = Path(__file__).parent.parent / "data" / "backtest"
EXPECTED = {"noise-0": "promote", "err+5-0": "rollback", "latency-x1.5-0": "rollback",
            "low-traffic": "inconclusive"}


def policy(*metrics: MetricSpec, sequential: SequentialSpec | None = None) -> PolicySpec:
    return PolicySpec(name="p", prometheus_url="http://127.0.0.1:9", interval=60.0,
                      window=60.0, metrics=metrics, sequential=sequential)


SEQUENTIAL = policy(sequential=SequentialSpec(tolerance=1.0, min_stage_requests=100))


def test_output_format_one_json_object_per_scenario() -> None:
    answers = list(backtest_files(SEQUENTIAL, [str(DATA)]))
    assert [a["scenario"] for a in answers] == sorted(EXPECTED, key=lambda n: f"{n}.json")
    for a in answers:
        assert set(a) == {"scenario", "decision", "decidedAt", "reason"}
        assert a["decision"] in ("promote", "rollback", "inconclusive")
        assert isinstance(a["decidedAt"], float) and isinstance(a["reason"], str)
        assert a["reason"]
        json.dumps(a, allow_nan=False)
    assert {a["scenario"]: a["decision"] for a in answers} == EXPECTED


def test_sequential_decisions_and_reasons() -> None:
    got = {a["scenario"]: a for a in backtest_files(SEQUENTIAL, [str(DATA)])}
    bad = got["err+5-0"]
    assert bad["decidedAt"] < 600 and bad["reason"].startswith("errors: the canary is worse")
    assert "canary" in bad["reason"] and "vs stable" in bad["reason"]
    assert got["latency-x1.5-0"]["reason"].startswith("latency")
    assert got["noise-0"]["decidedAt"] == 600.0
    assert "too little canary traffic" in got["low-traffic"]["reason"]


def test_backtest_decides_as_the_controller_would() -> None:
    """One whole-recording call equals the check-by-check judge with persisted memory."""
    judge = SequentialJudge(SequentialSpec(tolerance=1.0))
    for path in sorted(DATA.glob("*.json")):
        intervals = load_recording(str(path)).intervals()
        whole = judge.run(intervals)
        memory: dict[str, Any] | None = None
        for i, iv in enumerate(intervals):
            step = judge.update(memory, iv)
            memory = json.loads(json.dumps(step.memory))
            if step.decision != "continue" or i == len(intervals) - 1:
                assert (step.decision, i, step.log_e) == (whole.decision, whole.index,
                                                          whole.log_e)
                break


def test_early_promotion_ends_the_scenario_early(tmp_path: Path) -> None:
    steady = {"name": "steady", "interval": "15s", "series": [
        {"t": 15 * (i + 1), "stable": {"requests": 9000, "errors": 90},
         "canary": {"requests": 1000, "errors": 10}} for i in range(40)]}
    path = tmp_path / "steady.json"
    path.write_text(json.dumps(steady))
    early = policy(sequential=SequentialSpec(tolerance=1.0, early_promotion=True,
                                             min_stage_requests=5000))
    answer = next(backtest_files(early, [str(path)]))
    assert answer["decision"] == "promote" and 75 <= answer["decidedAt"] < 600
    assert answer["reason"].startswith("promoted early")
    late = next(backtest_files(policy(sequential=SequentialSpec(tolerance=1.0)), [str(path)]))
    assert (late["decision"], late["decidedAt"]) == ("promote", 600.0)


ERRORS = MetricSpec(name="error-rate", builtin="error-rate", max=0.02)
LATENCY = MetricSpec(name="latency-p90", builtin="latency", quantile=0.9, max=0.25)
CUSTOM = MetricSpec(name="queue", query="max(queue_depth)", max=100)


def test_threshold_metrics_without_a_sequential_spec() -> None:
    got = {a["scenario"]: a for a in backtest_files(policy(ERRORS, LATENCY, CUSTOM),
                                                     [str(DATA)])}
    assert got["err+5-0"]["decision"] == "rollback"
    assert got["err+5-0"]["reason"].startswith("error-rate failed 1 time(s) (limit 0)")
    assert got["err+5-0"]["decidedAt"] == 60.0
    assert got["latency-x1.5-0"]["decision"] == "rollback"
    assert "latency-p90" in got["latency-x1.5-0"]["reason"]
    assert got["noise-0"]["decision"] == "promote"
    assert "queue" in got["noise-0"]["reason"]  # named as not replayable
    # 1 canary request a minute: an error rate of 0 proves little, but it passes
    assert got["low-traffic"]["decision"] in ("promote", "inconclusive")


def test_a_p99_from_fewer_than_1000_requests_never_fails() -> None:
    """The recordings have a few hundred canary requests a minute: a p99 there is one
    of the slowest few requests, so it is inconclusive whatever its value."""
    p99 = MetricSpec(name="latency-p99", builtin="latency", quantile=0.99, max=0.01)
    got = {a["scenario"]: a for a in backtest_files(policy(p99), [str(DATA)])}
    for answer in got.values():
        assert answer["decision"] == "inconclusive"
        assert "never measured as passing" in answer["reason"]


def test_threshold_limits_and_guards() -> None:
    lenient = MetricSpec(name="error-rate", builtin="error-rate", max=0.02, failure_limit=3)
    guarded = MetricSpec(name="error-rate", builtin="error-rate", max=0.02,
                         min_requests=1000)
    path = [str(DATA / "err+5-0.json")]
    late = next(backtest_files(policy(lenient), path))
    assert late["decision"] == "rollback" and late["decidedAt"] == 240.0
    assert "failed 4 time(s) (limit 3)" in late["reason"]
    low = next(backtest_files(policy(guarded), [str(DATA / "low-traffic.json")]))
    assert low["decision"] == "inconclusive" and "error-rate" in low["reason"]


def test_a_guard_that_never_passes_holds_even_with_a_sequential_judge() -> None:
    """Live, a stage advances only on a passing check: a canary always under
    ``minRequests`` (``onLowTraffic: inconclusive``) is never promoted, and the backtest
    says so instead of promoting on the sequential judge's word alone."""
    seq = SequentialSpec(tolerance=1.0)
    guarded = MetricSpec(name="error-rate", builtin="error-rate", relative_max=0.25,
                         min_requests=1000)
    path = [str(DATA / "low-traffic.json")]
    held = next(backtest_files(policy(guarded, sequential=seq), path))
    assert held["decision"] == "inconclusive"
    assert "never measured as passing" in held["reason"] and "error-rate" in held["reason"]
    quiet = replace(guarded, on_low_traffic="pass-within-bounds")
    judged = next(backtest_files(policy(quiet, sequential=SequentialSpec(
        tolerance=1.0, min_stage_requests=1)), path))
    assert judged["decision"] == "promote", judged["reason"]


def test_a_guard_never_checked_does_not_hold_the_judge(tmp_path: Path) -> None:
    """A recording shorter than the policy's window (DESIGN's one-interval example): the
    guard was never checked, so nothing says a stage would have been held; the sequential
    judge decides. Without a judge nothing was measured: inconclusive."""
    short = {"name": "short", "interval": "15s", "series": [
        {"t": 15 * (i + 1), "stable": {"requests": 950, "errors": 9},
         "canary": {"requests": 50, "errors": 1}} for i in range(2)]}
    path = tmp_path / "short.json"
    path.write_text(json.dumps(short))
    guarded = MetricSpec(name="error-rate", builtin="error-rate", relative_max=0.25,
                         min_requests=1000)
    judged = next(backtest_files(policy(guarded, sequential=SequentialSpec(
        tolerance=1.0, min_stage_requests=1)), [str(path)]))
    assert judged["decision"] == "promote", judged["reason"]
    alone = next(backtest_files(policy(guarded), [str(path)]))
    assert alone["decision"] == "inconclusive"
    assert "never measured as passing" in alone["reason"]


def test_nothing_to_replay_is_inconclusive(tmp_path: Path) -> None:
    only_custom = next(backtest_files(policy(CUSTOM), [str(DATA / "noise-0.json")]))
    assert only_custom["decision"] == "inconclusive"
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"name": "empty", "interval": "15s", "series": []}))
    answer = next(backtest_files(SEQUENTIAL, [str(empty)]))
    assert (answer["decision"], answer["decidedAt"]) == ("inconclusive", 0.0)


def test_bad_files_raise_input_errors_naming_them(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "interval": "15s",
                               "series": [{"t": 15, "stable": {"requests": "many", "errors": 0}}]}))
    with pytest.raises(InputError) as err:
        list(backtest_files(SEQUENTIAL, [str(bad)]))
    assert err.value.file == str(bad) and err.value.field == "series[0].stable.requests"


def test_a_recording_object_can_be_judged_directly() -> None:
    rec = load_recording(str(DATA / "err+5-0.json"))
    assert backtest_recording(SEQUENTIAL, rec)["decision"] == "rollback"


def test_at_100_percent_a_relative_backstop_holds_the_canary_to_the_stable_baseline() -> None:
    """Ten minutes at 50% (1% errors on both), then the stable version has no traffic:
    a canary failing 40% of requests there is rolled back against stable's baseline."""
    def at(t: float, canary_errors: float, stable: bool) -> Point:
        return Point(t=t, canary=VersionCounts(requests=300, errors=canary_errors),
                     stable=VersionCounts(requests=300, errors=3) if stable else None)
    before = [at(15.0 * (k + 1), 3, True) for k in range(40)]
    full = [at(600 + 15.0 * (k + 1), 120, False) for k in range(8)]
    rec = Recording(name="full", service="s", interval=15.0, series=tuple(before + full))
    backstop = MetricSpec(name="error-rate", builtin="error-rate", relative_max=0.25,
                          min_requests=50)
    got = backtest_recording(policy(backstop), rec)
    assert got["decision"] == "rollback" and got["decidedAt"] > 600
    assert "its baseline over the last 1h: no stable traffic in the window" in got["reason"]
    healthy = Recording(name="ok", service="s", interval=15.0,
                        series=tuple(before + [at(600 + 15.0 * (k + 1), 3, False)
                                               for k in range(8)]))
    assert backtest_recording(policy(backstop), healthy)["decision"] == "promote"
