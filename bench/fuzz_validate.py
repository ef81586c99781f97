"""Issue 13's measurement: N seeded mutations of the shipped rollout and policy files
through `canary validate` (in-process), then, for each file it accepts, the deploy path
(load_specs, the plan, every instant derived from a duration, the router adapter).

    .venv/bin/python -m bench.fuzz_validate                 # 1,000 cases, seed 13
    .venv/bin/python -m bench.fuzz_validate --cases 300 --seed 1 --hang 10

Counts tracebacks, exit codes, hangs (a case still running after --hang seconds is
stopped and counted), validated files the deploy path crashes on, and the slowest case;
then the alias bomb on its own in a fresh process: wall time and peak RSS of
`canary validate bomb.yaml`. Runs against whatever `canary` package is first on the path,
so the same script measures an older tree (PYTHONPATH=<old tree>:.).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from tests.fuzz.harness import Hang, hang_guard, run_case
from tests.fuzz.mutations import BOMB, REPO, cases

_BOMB_ROLLOUT = (REPO / "examples/rollouts/dry-run.yaml").read_text() + BOMB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--hang", type=float, default=10.0, help="seconds before a case "
                        "counts as a hang and is stopped")
    args = parser.parse_args()
    os.environ.setdefault("EDGE_API_TOKEN", "t")  # examples/rollouts/http.yaml reads it
    os.environ["CANARY_DEBUG_LOG"] = os.devnull
    import canary

    print(f"canary from {Path(canary.__file__).parent}")
    _bomb(args.hang)
    codes: collections.Counter[int] = collections.Counter()
    tracebacks = hangs = deploy_crashes = 0
    slowest = (0.0, "")
    examples: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases(args.cases, seed=args.seed)):
            out = run_case(case, Path(tmp), i, hang=args.hang)
            what = f"case {i} {case.seed.name} {'+'.join(case.mutations)}"
            codes[out.exit_code] += 1
            tracebacks += out.traceback
            hangs += out.hung
            if out.deploy_error:
                deploy_crashes += 1
                examples.setdefault("deploy crash", f"{what}: {out.deploy_error}")
            if out.traceback:
                examples.setdefault("traceback", f"{what}: {out.output.strip()[-200:]}")
            if out.seconds > slowest[0]:
                slowest = (out.seconds, what)
    total = time.perf_counter() - started
    print(f"{args.cases} cases (seed {args.seed}) in {total:.1f}s")
    print(f"exit codes: {dict(sorted(codes.items()))}")
    print(f"tracebacks: {tracebacks}; hangs (> {args.hang:g}s, stopped): {hangs}; "
          f"accepted by validate then crashing the deploy path: {deploy_crashes}")
    print(f"slowest case: {slowest[0]:.2f}s ({slowest[1]})")
    for kind, text in examples.items():
        print(f"first {kind}: {text}")


def _bomb(limit: float) -> None:
    """`canary validate` of a rollout ending in a 9^9 alias bomb, in a fresh process, next to
    the same rollout without it (the baseline: imports and one ordinary validation)."""
    with tempfile.TemporaryDirectory() as tmp:
        plain, bomb = Path(tmp) / "plain.yaml", Path(tmp) / "bomb.yaml"
        plain.write_text((REPO / "examples/rollouts/dry-run.yaml").read_text())
        bomb.write_text(_BOMB_ROLLOUT)
        for label, path in (("plain rollout (baseline)", plain),
                            (f"alias bomb ({len(BOMB)} bytes of YAML)", bomb)):
            print(f"{label} through `canary validate`: {_validate_process(path, limit)}")
    print(f"alias bomb through yamlsource.load_text in-process: {_load_bomb(limit)}")


def _load_bomb(limit: float) -> str:
    from canary.config.yamlsource import load_text
    from canary.errors import InputError

    tracemalloc.start()
    started = time.perf_counter()
    try:
        with hang_guard(limit):
            load_text(_BOMB_ROLLOUT, file="bomb.yaml")
        answer = "accepted"
    except InputError as exc:
        answer = f"refused ({exc.message})"
    except Hang:
        answer = f"still running after {limit:g}s (stopped)"
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return f"{answer}, {seconds * 1000:.1f} ms, {peak / 1e6:.2f} MB allocated at peak"


_MEASURE = """\
import sys, time
sys.argv = ['canary', 'validate', sys.argv[1]]
from canary.cli import main
t = time.perf_counter()
try:
    main()
except BaseException as e:
    code = getattr(e, 'code', 1)
    # VmHWM: this process's own peak (ru_maxrss would include the parent's before exec)
    hwm = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM'))
    print(f'exit {code}, {time.perf_counter() - t:.3f}s from main(), peak RSS '
          f'{int(hwm) / 1024:.0f} MB', file=sys.stderr)
"""


def _validate_process(path: Path, limit: float) -> str:
    try:
        done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True,
                              text=True, timeout=max(60.0, 6 * limit), check=False,
                              cwd=REPO)
    except subprocess.TimeoutExpired:
        return "still running after the timeout (killed)"
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"no output (exit {done.returncode})"


if __name__ == "__main__":
    main()
