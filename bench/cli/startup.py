"""Whole-process time of `canary status` next to `python -c pass`, interleaved (A B A B...).

    python -m bench.cli.startup [--runs 20] [--pythonpath DIR]

Makes a SQLite store of 20 rollouts in a temporary directory, then times each command
from outside (wall: a monotonic clock around the child; cpu: the child's user + system
from getrusage) and prints min / median / max. --pythonpath runs canary from another
source tree (e.g. `git archive <commit> | tar -x -C DIR`) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def make_store(path: Path, count: int) -> None:
    from canary.model import Phase
    from canary.state import RolloutState
    from canary.store.sqlite import SQLiteStore

    store, t = SQLiteStore(str(path)), datetime.now(UTC)
    for i in range(count):
        store.create(RolloutState(id=f"r{i}", name=f"svc-{i}", service=f"svc-{i}",
                                  version="2.0.0", stable_version="1.0.0", document="",
                                  source="x.yaml", created_at=t, updated_at=t,
                                  phase=Phase.PROGRESSING, stage_index=1, desired_weight=25))
    store.close()


def timed(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pythonpath", default="")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        make_store(db, 20)  # in a temporary working directory: -m puts it first on sys.path
        a = [sys.executable, "-m", "canary", "status", "svc-3", "--store", f"sqlite:///{db}"]
        b = [sys.executable, "-c", "pass"]
        rows: dict[str, list[tuple[float, float]]] = {"canary status": [], "python -c pass": []}
        for _ in range(2):  # warm-up, not counted
            timed(a, env, tmp), timed(b, env, tmp)
        for _ in range(args.runs):
            rows["canary status"].append(timed(a, env, tmp))
            rows["python -c pass"].append(timed(b, env, tmp))
    print(f"{'':<16}{'wall min':>10}{'median':>10}{'max':>10}{'cpu median':>12}")
    for name, runs in rows.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"{name:<16}{min(walls):>10.3f}{statistics.median(walls):>10.3f}"
              f"{max(walls):>10.3f}{statistics.median(cpus):>12.3f}")
    # Pair by pair (each A next to its B), so a machine whose speed drifts cancels out.
    pairs = list(zip(rows["canary status"], rows["python -c pass"], strict=True))
    print(f"{'status / pass':<16}{'':>10}{statistics.median(a[0] / b[0] for a, b in pairs):>10.2f}"
          f"{'':>10}{statistics.median(a[1] / max(b[1], 1e-3) for a, b in pairs):>12.2f}")


if __name__ == "__main__":
    main()
