"""The sequential judge fed live from a real Prometheus, and `canary record` pulling the
same counters into a recording that `canary backtest` replays to the same decision."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from canary.analysis.sequential.live import LiveSequential, version_counts
from canary.cli import app
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Outcome
from canary.specs import PolicySpec, SequentialSpec
from lab.proc import wait_until
from tests.metrics.lab import Lab

runner = CliRunner()


def policy(url: str, interval: float = 10.0) -> PolicySpec:
    return PolicySpec(name="live", prometheus_url=url, interval=interval, window=interval,
                      metrics=(), sequential=SequentialSpec(alpha=0.02, tolerance=1.0))


def test_counter_increments_per_version(lab: Lab, provider: PrometheusProvider) -> None:
    p = policy(lab.prometheus_url)
    canary = version_counts(provider, p, side="canary", service="checkout", version="2.0.0",
                            stable_version="1.0.0", seconds=10)
    stable = version_counts(provider, p, side="stable", service="checkout", version="1.0.0",
                            stable_version="1.0.0", seconds=10)
    assert canary is not None and stable is not None
    assert 300 < canary.requests < 500  # 40 req/s over 10 s
    assert 0.35 < canary.errors / canary.requests < 0.45
    assert stable.errors == 0
    assert canary.latency and max(canary.latency) == float("inf")
    nobody = version_counts(provider, p, side="canary", service="checkout", version="9.9.9",
                            stable_version="1.0.0", seconds=10)
    assert nobody is None  # no series: no data, never a pass


def test_live_judge_rolls_back_a_canary_worse_than_stable(lab: Lab,
                                                          provider: PrometheusProvider) -> None:
    live = LiveSequential(policy(lab.prometheus_url, interval=2.0), provider)
    memory = None
    outcomes = []
    for i in range(20):
        if i:
            time.sleep(2.0)  # each check measures the span since the previous one
        results, memory, _early = live.check(memory, service="checkout", version="2.0.0",
                                             stable_version="1.0.0", stage=0)
        outcomes.append(results[0].outcome)
        memory = json.loads(json.dumps(memory))  # persisted between checks, as in the store
        if results[0].outcome is Outcome.FAILED:
            assert "worse than stable" in results[0].message
            break
    assert outcomes[-1] is Outcome.FAILED
    assert Outcome.FAILED not in outcomes[:2]  # the warm-up is not judged


def test_live_judge_passes_a_canary_like_stable(lab: Lab, provider: PrometheusProvider) -> None:
    live = LiveSequential(policy(lab.prometheus_url, interval=2.0), provider)
    memory = None
    for i in range(6):
        if i:
            time.sleep(2.0)
        results, memory, _ = live.check(memory, service="checkout", version="1.0.0",
                                        stable_version="1.0.0", stage=0)
        assert results[0].outcome is Outcome.PASSED, results[0].message


def test_record_then_backtest(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "rec.json"

    def pull() -> dict[str, Any]:
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - timedelta(seconds=60)
        res = runner.invoke(app, ["record", "--service", "checkout", "--canary", "2.0.0",
                                  "--stable", "1.0.0", "--start", start.isoformat(), "--end",
                                  end.isoformat(), "--interval", "2s", "--prometheus",
                                  lab.prometheus_url, "--name", "lab-40pct", "-o", str(out)])
        assert res.exit_code == 0, res.output
        data: dict[str, Any] = json.loads(out.read_text())
        return data

    # the lab may have started moments ago: wait for 30 s of traffic (past the warm-up)
    wait_until(lambda: len(pull()["series"]) >= 15, timeout=60, interval=2,
               what="30 s of recorded traffic")
    data = pull()
    assert data["name"] == "lab-40pct" and data["interval"] == "2s"
    point = data["series"][-1]
    assert 0.3 < point["canary"]["errors"] / point["canary"]["requests"] < 0.5
    assert point["stable"]["errors"] == 0 and "+Inf" in point["canary"]["latency"]
    bt = runner.invoke(app, ["backtest", "--policy", "default", "--data", str(out), "-o",
                             "json"])
    assert bt.exit_code == 0, bt.output
    answer = json.loads(bt.output.strip().splitlines()[0])
    assert answer["scenario"] == "lab-40pct" and answer["decision"] == "rollback"


def test_record_refuses_bad_input(tmp_path: Path) -> None:
    res = runner.invoke(app, ["record", "--service", "s", "--canary", "2", "--stable", "1",
                              "--start", "yesterday", "--end", "now"])
    assert res.exit_code == 2 and "ISO time" in res.output


def test_memory_of_an_older_judge_restarts_the_evidence(lab: Lab,
                                                        provider: PrometheusProvider) -> None:
    """A controller upgraded mid-rollout finds a memory it cannot read: the check still
    judges (from fresh evidence) and says so, rather than erroring towards a rollback."""
    live = LiveSequential(policy(lab.prometheus_url), provider)
    old = {"v": 1, "errors": {"counts": [0.0] * 6}}
    results, memory, _early = live.check(old, service="checkout", version="2.0.0",
                                         stable_version="1.0.0", stage=0)
    assert results[0].outcome is not Outcome.ERROR
    assert "evidence restarted" in results[0].message
    assert memory is not None and memory["v"] != 1


def test_memory_without_an_evaluation_time_restarts_the_evidence(
        lab: Lab, provider: PrometheusProvider) -> None:
    """A judge memory persisted before exact accounting (no ``live`` part) cannot say where
    its last span ended: the evidence restarts, with a note, and the span is tracked on."""
    live = LiveSequential(policy(lab.prometheus_url, interval=2.0), provider)
    _results, memory, _ = live.check(None, service="checkout", version="2.0.0",
                                     stable_version="1.0.0", stage=0)
    assert memory is not None and memory["live"]["fed"]["spans"] == 1
    older = {k: v for k, v in memory.items() if k != "live"}
    time.sleep(2.0)
    results, again, _ = live.check(older, service="checkout", version="2.0.0",
                                   stable_version="1.0.0", stage=0)
    assert "evidence restarted" in results[0].message and "older canary" in results[0].message
    assert again is not None and again["intervals"] == 1 and again["live"]["fed"]["spans"] == 1
    time.sleep(2.0)
    results, third, _ = live.check(again, service="checkout", version="2.0.0",
                                   stable_version="1.0.0", stage=0)
    assert "evidence restarted" not in results[0].message
    assert third is not None and third["live"]["at"] - again["live"]["at"] >= 2.0
