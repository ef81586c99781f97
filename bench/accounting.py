"""Live vs recorded: does `canary record` + `canary backtest` of a live rollout reach the
decision the live judge reached, within one interval?

One real lab (lab/: demo apps under steady load, a real Prometheus scraping every
second) and N short rollouts against it, healthy and faulty in turn. Each rollout is the
live judge loop (tests/metrics/accounting_driver.py: LiveSequential on the real
Prometheus, half the rollouts through the batching hub `canary serve` uses, checks every
2 s, started when due or on the next ``--tick``) until it rolls back or 20 checks pass; then
`canary record` pulls exactly that span and `canary backtest` replays it. For contrast it
also sums what the old feeding (``increase(...[2s])`` evaluated when each check started)
would have fed, relative to the exact figure (``oldFeedingError``).

    .venv/bin/python -m bench.accounting               # 20 rollouts, about 19 minutes
    .venv/bin/python -m bench.accounting --tick 0.5    # checks up to 0.5 s late
    .venv/bin/python -m bench.accounting --rollouts 4  # a smoke run

Writes bench/results/accounting-tick<T>.json (every rollout) and prints the agreement x/N.
Each rollout keeps what explains a disagreement: per live check (``liveChecks``) and per
recorded interval as the backtest's judge steps through them (``backtestIntervals``), the
span's seconds, both versions' requests, errors and latency buckets, and the combined log
e-value after it (rollback at log(1/alpha)). bench/accounting_replay.py replays a stored
rollout both ways through the judge, with its knobs changed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lab.load import Load
from tests.metrics.accounting_lab import rollout_and_replay, running_accounting_lab

RESULTS = Path(__file__).resolve().parent / "results"
STABLE = "1.0.0"
# version: error rate; stable answers 1% errors
APPS = {STABLE: 0.01, "2.0.0": 0.01, "3.0.0": 0.04, "4.0.0": 0.025, "5.0.0": 0.08}
ORDER = ["2.0.0", "3.0.0", "2.0.0", "4.0.0", "2.0.0", "5.0.0"]  # healthy, faulty, ...
RPS = 50.0


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 4), "mean": round(sum(values) / len(values), 4),
            "max": round(max(values), 4)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rollouts", type=int, default=20)
    ap.add_argument("--checks", type=int, default=20)
    ap.add_argument("--tick", type=float, default=0.0,
                    help="checks start on the next tick after they come due: 0 wakes "
                         "exactly when due, as `canary deploy` does; `canary serve` ticks "
                         "every min(--tick, interval), 1 s by default")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if shutil.which("prometheus") is None:
        raise SystemExit("prometheus is not installed (scripts/setup)")
    work = Path(tempfile.mkdtemp(prefix="canary-accounting-"))
    rows = []
    t0 = time.monotonic()
    with running_accounting_lab(work, APPS) as lab:
        loads = [Load(f"{a.info['url']}/", rps=RPS).start() for a in lab.apps.values()]
        try:
            time.sleep(3)
            for i in range(args.rollouts):
                canary = ORDER[i % len(ORDER)]
                batch = 2.0 if (i // 2) % 2 else 0.0  # healthy and faulty, both ways
                r = rollout_and_replay(lab, work / f"rollout-{i:02d}", canary=canary,
                                       stable=STABLE, checks=args.checks,
                                       batch_max_age=batch, tick=args.tick)
                row = {**r.to_json(), "errorRate": APPS[canary], "batchMaxAge": batch}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items()
                                  if k not in ("liveChecks", "backtestIntervals")}),
                      flush=True)
        finally:
            for load in loads:
                load.stop()
    agree = sum(1 for r in rows if r["agree"])
    summary = {"rollouts": len(rows), "agree": agree,
               "faulty": sum(1 for r in rows if r["errorRate"] > APPS[STABLE]),
               "liveRollbacks": sum(1 for r in rows if r["live"] == "rollback"),
               "oldFeedingError": _spread([r["oldFed"] / r["fed"] - 1 for r in rows]),
               "seconds": round(time.monotonic() - t0, 1), "tick": args.tick}
    out = args.out or RESULTS / f"accounting-tick{args.tick:g}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rollouts": rows}, indent=1) + "\n")
    print(f"record + backtest agree with the live decision (within one interval) in "
          f"{agree}/{len(rows)} lab rollouts; {summary}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if agree * 20 >= len(rows) * 19 else 1


if __name__ == "__main__":
    raise SystemExit(main())
