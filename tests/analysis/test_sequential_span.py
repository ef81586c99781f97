"""The per-interval caps follow each interval's length: the same traffic counts the same
whether a late live check measures it as one long span or a recording cuts it into the
nominal intervals - and nothing changes where every interval has the nominal length.

Why: a live check that starts late measures a longer span (bench/accounting.py, checks on
a 0.5 s tick through the batching hub: spans of 4 s beside the recording's 2 s). With a
cap per check, whatever its length, a faulty canary whose every interval hits the cap got
half the evidence live that the backtest of its recording got (docs/accounting.md).
"""

from __future__ import annotations

import json
import math

import pytest

from canary.analysis.sequential.core import (
    IntervalCounts,
    JudgeTuning,
    SequentialJudge,
    VersionCounts,
)
from canary.replay.backtest import backtest_judge, backtest_recording
from canary.replay.recording import parse_recording
from canary.specs import PolicySpec, SequentialSpec
from tests.analysis.span_paths import GOLDEN, paths, spec

LOG_50 = math.log(50)  # log(1/alpha) at alpha 0.02


def traffic(seconds: float, *, canary_errors: float, stable_errors: float = 0.5
            ) -> IntervalCounts:
    """50 requests per second on each version; errors per second as given."""
    return IntervalCounts(
        stable=VersionCounts(50.0 * seconds, stable_errors * seconds),
        canary=VersionCounts(50.0 * seconds, canary_errors * seconds), seconds=seconds)


def path(judge: SequentialJudge, intervals: list[IntervalCounts]) -> list[float]:
    memory, out = None, []
    for iv in intervals:
        step = judge.update(memory, iv)
        memory = json.loads(json.dumps(step.memory))
        out.append(step.log_e)
    return out


def test_fifteen_second_intervals_decide_bit_for_bit_as_main() -> None:
    """bench/judge.py's simulation (15 s intervals, every interval nominal): the log
    e-values and decisions main computed (tests/data/sequential/main-paths.json), exactly,
    with the nominal interval given and without it."""
    main = json.loads(GOLDEN.read_text())
    assert len(main) == 28
    for interval in (15.0, None):
        got = paths(lambda early, i=interval: SequentialJudge(  # type: ignore[misc]
            spec(early), tuning=JudgeTuning(), interval=i))
        assert got == main  # float equality: bit for bit
    # the file covers capped intervals: rollbacks within 3 intervals of the warm-up
    assert main["err+5/0/fixed"]["run"][:2] == ["rollback", 3]
    assert main["latency-x1.5/0/fixed"]["run"][:2] == ["rollback", 4]


@pytest.mark.parametrize("dispersion", [False, True])
def test_one_long_check_counts_as_the_two_intervals_it_covers(dispersion: bool) -> None:
    """8% errors against 1% at 50 req/s: every 2 s interval hits the errors' cap (half of
    log 50). Fed as 4 s spans, main's cap per check gave half the evidence."""
    tuning = JudgeTuning(warmup=0.0) if dispersion else JudgeTuning(
        warmup=0.0, dispersion_prior=0.0, stable_dispersion=0.0)
    sp = SequentialSpec(alpha=0.02, tolerance=1.0, warmup=0.0)
    two = [traffic(2.0, canary_errors=4.0)] * 2
    four = [traffic(4.0, canary_errors=4.0)]
    fixed = SequentialJudge(sp, tuning=tuning, interval=2.0)
    short, long = path(fixed, two)[-1], path(fixed, four)[-1]
    # the cap binds: two 2 s intervals reach at most two caps of half of log 50
    assert 0.75 * LOG_50 < short <= 2 * fixed.cap + 1e-9
    # the same traffic, cut in two or in one: within 0.05 x log 50 (exactly the same
    # without the dispersion guard, which sees a longer interval's deviations grow)
    assert long == pytest.approx(short, abs=0.05 * LOG_50 if dispersion else 1e-9)
    # main's cap per check, whatever its length: the 4 s span counted for half
    per_check = SequentialJudge(sp, tuning=tuning)
    assert path(per_check, two)[-1] == short
    assert path(per_check, four)[-1] < short - 0.4 * LOG_50


def test_a_span_across_the_warm_up_is_judged_for_its_part_after_it() -> None:
    """Warm-up 6 s, nominal 2 s: a late live check's 4 s span from 4 to 8 s holds 2 s of
    warm-up that the recording's grid (6 to 8 s judged) ignores. Judged for its half after
    the warm-up, uniform traffic gives the grid's evidence; main judged all 4 s."""
    sp = SequentialSpec(alpha=0.02, tolerance=1.0, warmup=6.0)
    tuning = JudgeTuning(warmup=6.0, dispersion_prior=0.0, stable_dispersion=0.0)
    live = [traffic(2.0, canary_errors=1.5)] * 2 + [traffic(4.0, canary_errors=1.5)]
    grid = [traffic(2.0, canary_errors=1.5)] * 4
    now = SequentialJudge(sp, tuning=tuning, interval=2.0)
    on_grid = path(now, grid)
    assert abs(on_grid[2]) < 1e-12 < on_grid[3]  # 6 s of warm-up, then evidence
    assert path(now, live)[-1] == pytest.approx(path(now, grid)[-1], abs=1e-9)
    main = SequentialJudge(sp, tuning=tuning)
    assert path(main, live)[-1] > path(main, grid)[-1] + 0.1
    # with the nominal length everywhere, the warm-up is what it was
    assert path(now, grid) == path(main, grid)


def test_warm_up_ends_on_the_nominal_grid() -> None:
    """Warm-up 15 s with 10 s intervals: main judged the interval from 10 to 20 s whole,
    so the warm-up ends at 10 s for spans of any length (a 5 s span from 10 to 15 s is
    judged whole, not skipped as main would)."""
    sp = SequentialSpec(alpha=0.02, tolerance=1.0, warmup=15.0)
    tuning = JudgeTuning(warmup=15.0, dispersion_prior=0.0, stable_dispersion=0.0)
    now = SequentialJudge(sp, tuning=tuning, interval=10.0)
    grid = path(now, [traffic(10.0, canary_errors=1.5)] * 2)
    halves = path(now, [traffic(10.0, canary_errors=1.5)] + [traffic(5.0, canary_errors=1.5)]
                  * 2)
    assert abs(grid[0]) < 1e-12 < grid[1]
    assert grid == path(SequentialJudge(sp, tuning=tuning), [traffic(10.0, canary_errors=1.5)]
                        * 2)
    assert halves[1] > 1e-6 and halves[2] == pytest.approx(grid[1], abs=1e-9)


def test_short_spans_are_capped_in_proportion() -> None:
    """A check right after another (0.5 s of traffic) may add at most a quarter of a 2 s
    interval's cap, so splitting traffic finer cannot add evidence either."""
    sp = SequentialSpec(alpha=0.02, tolerance=1.0, warmup=0.0)
    tuning = JudgeTuning(warmup=0.0, dispersion_prior=0.0, stable_dispersion=0.0)
    judge = SequentialJudge(sp, tuning=tuning, interval=2.0)
    quarters = path(judge, [traffic(0.5, canary_errors=10.0)] * 4)
    whole = path(judge, [traffic(2.0, canary_errors=10.0)])
    assert quarters[-1] == pytest.approx(whole[0], abs=1e-9)
    assert whole[0] <= judge.cap + 1e-9  # the cap binds for the whole 2 s


def test_an_interval_without_a_length_gets_the_whole_cap() -> None:
    """``seconds`` 0 (not given, as in older callers' IntervalCounts): scale 1."""
    sp = SequentialSpec(alpha=0.02, tolerance=1.0, warmup=0.0)
    iv = IntervalCounts(stable=VersionCounts(100.0, 1.0), canary=VersionCounts(100.0, 8.0))
    assert path(SequentialJudge(sp, interval=2.0), [iv] * 3) == \
        path(SequentialJudge(sp), [iv] * 3)
    with pytest.raises(ValueError, match="interval"):
        SequentialJudge(sp, interval=0.0)


def test_backtest_and_live_judges_know_their_nominal_interval() -> None:
    policy = PolicySpec(name="p", prometheus_url="http://127.0.0.1:9", interval=30.0,
                        window=60.0, metrics=(), sequential=SequentialSpec())
    rec = parse_recording({"name": "r", "interval": "2s", "series": [
        {"t": 2.0 * (k + 1), "stable": {"requests": 100, "errors": 1},
         "canary": {"requests": 100, "errors": 8}} for k in range(12)]})
    judge = backtest_judge(policy, rec)
    assert judge is not None and judge.interval == 2.0
    # a recording's intervals all have its length: the backtest is what it was
    same = backtest_recording(policy, rec, judge=SequentialJudge(policy.sequential))
    assert backtest_recording(policy, rec) == same
    assert same["decision"] == "rollback"
