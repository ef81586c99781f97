"""Why do a live rollout and the backtest of its recording decide differently?

Replays rollouts stored by bench/accounting.py (``liveChecks``: what each live check fed
the judge; ``backtestIntervals``: the recording's intervals) both ways through
SequentialJudge: with the judge as main built it (``main``: a cap per check whatever its
span, the warm-up by whole intervals), as it is now (``now``: caps per second of the
span, the warm-up's end on the nominal grid; canary/analysis/sequential/spans.py), and
with one part of main's judge changed at a time (no cap, no warm-up, no dispersion guard,
errors only). A change that makes the two agree, on the same traffic, shows what the cut
of the traffic into intervals acted through.

    .venv/bin/python -m bench.accounting_replay bench/results/accounting-tick0.5-main.json
    .venv/bin/python -m bench.accounting_replay FILE --rollout 3 --show   # check by check

Also checks that the replay reproduces the stored log e-values (``replayError``, with the
judge that wrote the file, main's or today's): the stored counts are all the judge saw.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from canary.analysis.sequential.core import (
    IntervalCounts,
    JudgeTuning,
    SequentialJudge,
    VersionCounts,
)
from canary.config.spec import load_policy
from canary.specs import SequentialSpec
from tests.metrics.accounting_lab import INTERVAL, POLICY

Make = Callable[[SequentialSpec, JudgeTuning], SequentialJudge]


def _per_check(spec: SequentialSpec, tuning: JudgeTuning) -> SequentialJudge:
    return SequentialJudge(spec, tuning=tuning)


def _per_second(spec: SequentialSpec, tuning: JudgeTuning) -> SequentialJudge:
    return SequentialJudge(spec, tuning=tuning, interval=INTERVAL)


def _tuned(make: Make, **knobs: Any) -> Make:
    return lambda spec, tuning: make(spec, dataclasses.replace(tuning, **knobs))


MAIN = "main"
NOW = "now"
VARIANTS: dict[str, Make] = {
    MAIN: _per_check,  # a cap per check, the warm-up by whole intervals
    NOW: _per_second,  # caps per second, the warm-up's end on the nominal grid
    "main, no cap": _tuned(_per_check, cap_fraction=1e6, latency_cap_fraction=1e6),
    "main, no warm-up": _tuned(_per_check, warmup=0.0),
    "main, no cap, no warm-up": _tuned(_per_check, cap_fraction=1e6,
                                       latency_cap_fraction=1e6, warmup=0.0),
    "main, no dispersion guard": _tuned(_per_check, dispersion_prior=0.0,
                                        stable_dispersion=0.0),
    "main, errors only": _tuned(_per_check, latency=False),
    "now, no dispersion guard": _tuned(_per_second, dispersion_prior=0.0,
                                       stable_dispersion=0.0),
    "now, errors only": _tuned(_per_second, latency=False),
}


def version(d: dict[str, Any] | None) -> VersionCounts | None:
    if d is None:
        return None
    return VersionCounts(float(d["requests"]), float(d["errors"]), {
        (math.inf if b == "+Inf" else float(b)): float(c)
        for b, c in (d.get("latency") or {}).items()})


def intervals(rows: list[dict[str, Any]]) -> list[IntervalCounts]:
    return [IntervalCounts(stable=version(r["stable"]), canary=version(r["canary"]),
                           seconds=float(r["seconds"])) for r in rows]


def steps(judge: SequentialJudge, ivs: list[IntervalCounts]) -> list[tuple[str, float]]:
    """(decision, combined log e-value) after each interval, up to the first rollback."""
    memory: dict[str, Any] | None = None
    out: list[tuple[str, float]] = []
    for iv in ivs:
        step = judge.update(memory, iv)
        memory = step.memory
        out.append((step.decision, step.log_e))
        if step.decision == "rollback":
            break
    return out


def decided(rows: list[dict[str, Any]], path: list[tuple[str, float]], *,
            cut_short: bool = False) -> tuple[str, float]:
    """("rollback", t) at the first rollback, else ("promote", t of the last interval);
    ("later", t) when the stored checks end at a rollback that this judge has not reached
    (``cut_short``): the live rollout stopped there, its next checks were never made."""
    for row, (decision, _) in zip(rows, path, strict=False):
        if decision == "rollback":
            return "rollback", float(row["t"])
    return "later" if cut_short else "promote", float(rows[len(path) - 1]["t"])


def agree(live: tuple[str, float], backtest: tuple[str, float]) -> bool | None:
    """As bench/accounting.py counts it; None when the live replay cannot tell."""
    if live[0] == "later":  # unless the backtest rolled back well before the live end
        return None if backtest[0] != "rollback" or backtest[1] > live[1] - INTERVAL \
            else False
    if live[0] != backtest[0]:
        return False
    return live[0] != "rollback" or abs(live[1] - backtest[1]) <= INTERVAL + 1e-6


def gap(live_rows: list[dict[str, Any]], live: list[tuple[str, float]],
        bt_rows: list[dict[str, Any]], backtest: list[tuple[str, float]]) -> float:
    """The largest |live log e - the backtest's at the same time| (the backtest's log
    e-value interpolated linearly between its grid points), over the live checks the
    backtest's path covers: how far the cut alone moves the evidence."""
    ts = [0.0] + [float(r["t"]) for r in bt_rows[:len(backtest)]]
    es = [0.0] + [e for _, e in backtest]
    worst = 0.0
    for row, (_, e) in zip(live_rows, live, strict=False):
        t = float(row["t"])
        if t > ts[-1]:
            break
        k = next(i for i in range(1, len(ts)) if ts[i] >= t)
        w = (t - ts[k - 1]) / (ts[k] - ts[k - 1])
        worst = max(worst, abs(e - (es[k - 1] + w * (es[k] - es[k - 1]))))
    return worst


def spec_of_lab() -> SequentialSpec:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_text(POLICY.format(url="http://127.0.0.1:9"))
        seq = load_policy(str(path)).sequential
    assert seq is not None
    return seq


def replay(row: dict[str, Any], spec: SequentialSpec, base: JudgeTuning
           ) -> dict[str, Any]:
    live_rows, bt_rows = row["liveChecks"], row["backtestIntervals"]
    out: dict[str, Any] = {}
    for name, make in VARIANTS.items():
        judge = make(spec, base)
        lp, bp = steps(judge, intervals(live_rows)), steps(judge, intervals(bt_rows))
        lv = decided(live_rows, lp, cut_short=row["live"] == "rollback")
        bv = decided(bt_rows, bp)
        out[name] = {"live": lv, "backtest": bv, "agree": agree(lv, bv),
                     "gap": gap(live_rows, lp, bt_rows, bp), "livePath": lp,
                     "backtestPath": bp}

    def error(name: str) -> float:
        pairs = [*zip(out[name]["livePath"], live_rows, strict=False),
                 *zip(out[name]["backtestPath"], bt_rows, strict=False)]
        return float(max(abs(e - float(r["logE"])) for (_, e), r in pairs))

    # the file was written by main's judge or by today's: the replay must match one exactly
    errors = {n: error(n) for n in (MAIN, NOW)}
    best = min(errors, key=lambda n: errors[n])
    out["replayError"] = (errors[best], "either judge" if errors[MAIN] == errors[NOW]
                          else f"{best}'s judge")
    return out


def show(row: dict[str, Any], result: dict[str, Any]) -> None:
    """Check by check: span, counts, main's and the per-second judge's log e-values."""
    names = (MAIN, NOW)
    for side, key in (("live", "liveChecks"), ("backtest", "backtestIntervals")):
        print(f"  {side}: t, seconds, canary req/err, stable req/err, log e: "
              + " | ".join(names))
        for i, r in enumerate(row[key]):
            c, s = r["canary"] or {}, r["stable"] or {}
            cells = []
            for n in names:
                p = result[n][f"{side}Path"]
                cells.append(f"{p[i][1]:6.3f}" if i < len(p) else "     -")
            print(f"    {r['t']:7.3f} {r['seconds']:5.2f}  {c.get('requests', 0):5.0f} "
                  f"{c.get('errors', 0):3.0f}  {s.get('requests', 0):5.0f} "
                  f"{s.get('errors', 0):3.0f}   " + " | ".join(cells))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--rollout", type=int, action="append",
                    help="only this rollout (index in the file); repeatable")
    ap.add_argument("--show", action="store_true", help="print the paths check by check")
    args = ap.parse_args(argv)
    rows = json.loads(args.results.read_text())["rollouts"]
    spec = spec_of_lab()
    base = SequentialJudge(spec).tuning
    picked = args.rollout if args.rollout else range(len(rows))
    totals = {name: [0, 0, 0.0] for name in VARIANTS}  # agree, cannot tell, worst gap
    for i in picked:
        row = rows[i]
        if "liveChecks" not in row:
            raise SystemExit(f"rollout {i} has no per-check data (an older results file)")
        result = replay(row, spec, base)
        for name in VARIANTS:
            got = result[name]["agree"]
            totals[name][0] += got is True
            totals[name][1] += got is None
            totals[name][2] = max(totals[name][2], result[name]["gap"])
        mark = {True: "", False: " DISAGREE", None: " (cannot tell)"}
        cells = "; ".join(f"{n}: live {result[n]['live'][0]}@{result[n]['live'][1]:g} "
                          f"backtest {result[n]['backtest'][0]}@"
                          f"{result[n]['backtest'][1]:g}, gap {result[n]['gap']:.2f}"
                          f"{mark[result[n]['agree']]}" for n in VARIANTS)
        spans = sorted({round(r["seconds"], 1) for r in row["liveChecks"]})
        print(f"rollout {i} ({row['canary']}, {row['errorRate']:.1%} errors, batch "
              f"{row['batchMaxAge']:g} s, live spans {spans} s, stored: live "
              f"{row['live']}@{row['liveAt']:g} backtest {row['backtest']}@"
              f"{row['backtestAt']:g}; replay error {result['replayError'][0]:.1e} with "
              f"{result['replayError'][1]}): {cells}")
        if args.show:
            show(row, result)
    n = len(list(picked))
    print(f"per variant, of {n}: agree (+ cannot tell: the live rollout had stopped), "
          f"largest gap in log e at the same time, live vs backtest")
    for k, (yes, unknown, worst) in totals.items():
        print(f"  {k}: {yes}{f' (+{unknown})' if unknown else ''}, gap {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
