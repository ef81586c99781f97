"""How many events a failing router writes, and what `canary status` costs on a long journal.

    python -m bench.store_events [--hours 1] [--events 100000]

1. A rollout whose router is down for ``--hours`` simulated hours, ticked once a second as
   `canary deploy` does (a manual clock: no sleeping): the rows in its events table.
2. A store holding one rollout with ``--events`` distinct events: wall time of the real
   `canary status NAME` command (best of 3, a fresh process each time).

Run it against an older checkout (``PYTHONPATH=/path/to/old``) for the "before" figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from canary.clock import ManualClock
from canary.rollout.machine import Plan
from canary.rollout.runner import Runner
from canary.specs import RolloutSpec, RouterSpec, Stage
from canary.state import RolloutState
from canary.store.sqlite import SQLiteStore
from canary.testing import FakeRouter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _state(name: str) -> RolloutState:
    return RolloutState(id=f"id-{name}", name=name, service=name, version="2.0.0",
                        stable_version="1.0.0", document="", source="rollout.yaml",
                        created_at=T0, updated_at=T0)


def failing_router_rows(db: Path, hours: float) -> int:
    store = SQLiteStore(str(db))
    store.create(_state("checkout"))
    spec = RolloutSpec(name="checkout", service="checkout", version="2.0.0",
                       stable_version="1.0.0", router=RouterSpec(type="fake"),
                       stages=(Stage(5, 60), Stage(100, 60)), policy="default")
    router, clock = FakeRouter(), ManualClock(T0)
    runner = Runner(name="checkout", spec=spec, plan=Plan(stages=spec.stages, interval=10.0),
                    store=store, router=router, clock=clock, poll=1.0)
    runner.tick()  # the rollout starts: 5% asked
    router.down = True
    for _ in range(int(hours * 3600)):
        clock.advance(1.0)
        runner.tick()
    store.close()
    con = sqlite3.connect(db)
    rows = int(con.execute("SELECT count(*) FROM events").fetchone()[0])
    con.close()
    return rows


def status_seconds(db: Path, events: int) -> float:
    store = SQLiteStore(str(db))
    state = store.create(_state("busy"))
    store.close()
    con = sqlite3.connect(db)
    with con:  # distinct messages: nothing to coalesce, the journal really is this long
        con.executemany("INSERT INTO events (rollout_id, at, kind, message, data, key) "
                        "VALUES (?, ?, 'tick', ?, '{}', NULL)",
                        [(state.id, T0.isoformat(), f"event #{i}") for i in range(events)])
    con.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "canary", "status", "busy", "--store",
                        f"sqlite:///{db}"], check=True, capture_output=True, env=env)
        best = min(best, time.perf_counter() - started)
    return best


def status_read_seconds(db: Path) -> float:
    """What `canary status` asks the store (the rollout, its 20 newest events), in-process:
    the same figure without the interpreter's start-up."""
    store = SQLiteStore(str(db))
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        store.events(store.get("busy").id, limit=20)
        best = min(best, time.perf_counter() - started)
    store.close()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--events", type=int, default=100_000)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # a router down for an hour warns 3,600 times
    with tempfile.TemporaryDirectory() as d:
        rows = failing_router_rows(Path(d) / "router.db", args.hours)
        status = status_seconds(Path(d) / "status.db", args.events)
        read = status_read_seconds(Path(d) / "status.db")
        # the start-up alone, for scale: status of a rollout with no events
        empty = status_seconds(Path(d) / "empty.db", 0)
    print(json.dumps({"failing_router_hours": args.hours, "event_rows": rows,
                      "status_events": args.events, "status_seconds": round(status, 3),
                      "status_store_read_seconds": round(read, 4),
                      "status_seconds_empty_journal": round(empty, 3)}))


if __name__ == "__main__":
    main()
