"""Run one corpus case the way a user would: `canary validate` in-process, then, when it
is accepted, everything `canary deploy` computes from the file before moving traffic.

Shared by tests/fuzz/test_fuzz.py and bench/fuzz_validate.py.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from canary.cli import app
from canary.errors import InputError
from canary.rollout.wiring import load_specs, plan_for
from canary.specs import PolicySpec, RolloutSpec
from tests.fuzz.mutations import REPO, Case

HANG_SECONDS = 20  # a case still running after this is a hang, not a slow case
_DRY_RUN = (REPO / "examples/rollouts/dry-run.yaml").read_text()


class Hang(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    output: str  # stdout and stderr of validate
    seconds: float
    traceback: bool  # validate printed one, or raised out of the command
    hung: bool  # still running after the hang guard's limit (stopped there)
    deploy_error: str | None  # what the deploy path raised other than InputError


@contextmanager
def hang_guard(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Raise Hang in the main thread if the block runs longer than ``seconds``."""
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(case: Case, workdir: Path, index: int, *, hang: float = HANG_SECONDS
             ) -> Outcome:
    path = workdir / f"case-{index}-{case.seed.name}"
    path.write_bytes(case.data)
    runner = CliRunner()
    started = time.perf_counter()
    with hang_guard(hang):
        result = runner.invoke(app, ["validate", str(path)])
    seconds = time.perf_counter() - started
    hung = isinstance(result.exception, Hang)
    crashed = result.exception is not None and not isinstance(result.exception,
                                                               SystemExit | Hang)
    traceback = crashed or "Traceback" in result.output
    deploy_error = None
    if result.exit_code == 0:
        try:
            with hang_guard(hang):
                deploy_error = deploy_path(case, path, workdir)
        except Hang as exc:
            deploy_error = f"hang: {exc}"
    return Outcome(exit_code=result.exit_code, output=result.output, seconds=seconds,
                   traceback=traceback, hung=hung, deploy_error=deploy_error)


def deploy_path(case: Case, path: Path, workdir: Path) -> str | None:
    """What `canary deploy` does with an accepted file before traffic moves; None when it
    raised nothing but InputError."""
    if case.kind == "rollout":
        text, file = case.data.decode("utf-8"), str(path)
    else:
        text = _DRY_RUN.replace("policy: default", f"policy: {path}")
        file = str(workdir / "rollout-for-policy.yaml")
    try:
        try:
            spec, policy = load_specs(text, file=file, version=None)
        except InputError as exc:
            if "no version" not in exc.message:
                raise
            spec, policy = load_specs(text, file=file, version="9.9.9")
        plan_for(spec, policy)
        _instants(spec, policy)
        from canary.routers.registry import build_router

        build_router(spec.router)
    except InputError:
        return None
    except Exception as exc:  # the defect this harness hunts
        return f"{type(exc).__name__}: {exc}"
    return None


def _instants(spec: RolloutSpec, policy: PolicySpec) -> None:
    """Every time the controller derives from a duration: pause ends, next checks,
    deadlines, timeouts and the last hook retry."""
    now = datetime.now(UTC)
    seconds = [s.pause for s in spec.stages] + [policy.interval, policy.window]
    seconds += [d for d in (spec.progress_deadline, spec.deadline) if d is not None]
    seconds += [x for h in spec.hooks
                for x in (h.timeout, h.backoff * 2 ** max(0, h.retries - 1))]
    if spec.migration is not None:
        seconds += [spec.migration.timeout, spec.migration.compat_timeout]
    seconds += [m.initial_delay for m in policy.metrics]
    if policy.sequential is not None:
        seconds.append(policy.sequential.warmup)
    for s in seconds:
        now + timedelta(seconds=s)
        time_ns = int(s * 1e9)  # what time.sleep() and subprocess timeouts convert to
        if time_ns >= 2**63:
            raise OverflowError(f"{s} seconds cannot be slept")
