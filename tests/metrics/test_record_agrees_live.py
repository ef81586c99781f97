"""A live rollout, `canary record` of it and `canary backtest` of the recording reach the
same decision within one interval: a healthy canary and a faulty one on the real lab.

This fails if the recording does not hold what the live judge was fed (windows that
overlap or leave gaps, extrapolated increases) or if record and live count differently.
bench/accounting.py runs 20 such rollouts and reports the agreement.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.load import Load

from .accounting_lab import AccountingLab, rollout_and_replay, running_accounting_lab

pytestmark = pytest.mark.servers  # a real Prometheus and lab apps


@pytest.fixture(scope="module")
def replay_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountingLab]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed")
    apps = {"1.0.0": 0.01, "2.0.0": 0.01, "3.0.0": 0.04}
    with running_accounting_lab(tmp_path_factory.mktemp("replay"), apps) as lab:
        loads = [Load(f"{a.info['url']}/", rps=50).start() for a in lab.apps.values()]
        try:
            time.sleep(3)
            yield lab
        finally:
            for load in loads:
                load.stop()


@pytest.mark.parametrize(("canary", "batch", "expected"), [
    ("3.0.0", 0.0, "rollback"),  # 4% errors vs 1%
    ("2.0.0", 2.0, "promote"),  # like stable, checks through the batching hub
])
def test_record_and_backtest_decide_as_the_live_judge(replay_lab: AccountingLab,
                                                      tmp_path: Path, canary: str,
                                                      batch: float, expected: str) -> None:
    r = rollout_and_replay(replay_lab, tmp_path / "rollout", canary=canary, stable="1.0.0",
                           checks=15, batch_max_age=batch)
    print(r.to_json())
    assert r.live == expected  # the lab produced the case this test is about
    assert r.backtest == r.live
    # the recording counted what the live judge was fed, plus the part of an interval it
    # holds past the last check (under 2 s at 50 requests per second), and after a rollback
    # one whole interval more (100 requests), in which the backtest may still decide
    past = 105 + (100 if r.live == "rollback" else 0)
    assert r.fed <= r.recorded <= r.fed + past
    if r.live == "rollback":
        assert abs(r.backtest_at - r.live_at) <= 2.0
