"""Write simulated rollouts as recorded-traffic files (docs/contract.md) for ``canary backtest``.

``.venv/bin/python -m bench.recordings OUTDIR [--runs N] [--only NAME...] [--steps K]``
writes ``OUTDIR/<scenario>-<run>.json`` on the fixed 5/25/50% schedule, and
``OUTDIR/expected.json`` with each file's correct answer. With ``--time`` it then replays
them through ``backtest_files`` and prints scenarios per second.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from bench.scenarios import BAD, BOUNDS, DT, HEALTHY, STAGE_STEPS, STEPS, Counts, Simulation

SEED = 7100


def _version(n: Counts, r: int, side: str) -> dict[str, Any]:
    req, err, cum = (n.c, n.x, n.cl) if side == "canary" else (n.s, n.y, n.sl)
    latency = {("+Inf" if np.isinf(b) else f"{b:g}"): int(v) for b, v in zip(BOUNDS, cum[r],
                                                                             strict=True)}
    return {"requests": int(req[r]), "errors": int(err[r]), "latency": latency}


def write(out: str, *, runs: int, only: list[str] | None, steps: int) -> dict[str, str]:
    os.makedirs(out, exist_ok=True)
    expected = {}
    for i, sc in enumerate(HEALTHY + BAD):
        if only and sc.name not in only:
            continue
        sim = Simulation(sc, runs, SEED + i)
        series: list[list[dict[str, Any]]] = [[] for _ in range(runs)]
        for k in range(min(steps, STEPS)):
            n = sim.step(k, np.full(runs, k // STAGE_STEPS))
            for r in range(runs):
                series[r].append({"t": round((k + 1) * DT, 3), "stable": _version(n, r, "stable"),
                                  "canary": _version(n, r, "canary")})
        for r in range(runs):
            name = f"{sc.name}-{r}"
            with open(os.path.join(out, f"{name}.json"), "w") as f:
                json.dump({"name": name, "service": "checkout", "interval": f"{DT:g}s",
                           "series": series[r]}, f, separators=(",", ":"))
            expected[name] = "rollback" if sc.bad else "promote"
    with open(os.path.join(out, "expected.json.txt"), "w") as f:
        json.dump(expected, f, indent=1)
    return expected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--time", action="store_true", help="replay them and time the backtest")
    a = ap.parse_args()
    expected = write(a.out, runs=a.runs, only=a.only, steps=a.steps)
    print(f"wrote {len(expected)} recordings to {a.out}")
    if a.time:
        from canary.replay.backtest import backtest_files
        from canary.specs import PolicySpec, SequentialSpec

        policy = PolicySpec(name="bench", prometheus_url="", interval=60, window=60,
                            metrics=(), sequential=SequentialSpec(tolerance=1.0))
        t0 = time.perf_counter()
        answers = list(backtest_files(policy, [a.out]))
        took = time.perf_counter() - t0
        right = sum(x["decision"] == expected[x["scenario"]] for x in answers)
        print(f"{len(answers)} scenarios in {took:.2f} s: {len(answers) / took:.0f} per "
              f"second; {right} decided as expected")


if __name__ == "__main__":
    main()
