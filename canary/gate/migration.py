"""Run the migration command: argument list, no shell, bounded by its timeout.

Output is streamed line by line to a callback (the terminal) and kept (the rollout's
events). A timeout kills the whole process group, so a migration's children die with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from canary.model import GateResult
from canary.specs import MigrationSpec

MAX_KEPT = 64_000  # characters of output kept for the journal


def run_migration(spec: MigrationSpec, *, cwd: str,
                  on_line: Callable[[str], None] | None = None) -> GateResult:
    env = {**os.environ, **dict(spec.env)}
    workdir = os.path.join(cwd, spec.workdir) if spec.workdir else cwd
    started = time.monotonic()
    try:
        proc = subprocess.Popen(list(spec.command), cwd=workdir, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return GateResult(ok=False, message=f"cannot start {spec.command[0]!r}: {exc.strerror}")
    kept: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kept.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=spec.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(2)
        return GateResult(ok=False, timed_out=True, output="".join(kept)[-MAX_KEPT:],
                          message=f"migration timed out after {spec.timeout:g}s")
    reader.join(5)
    took = time.monotonic() - started
    output = "".join(kept)[-MAX_KEPT:]
    if code != 0:
        tail = output.strip().splitlines()[-1:] or [""]
        return GateResult(ok=False, output=output,
                          message=f"migration exited with status {code}: {tail[0][:300]}")
    return GateResult(ok=True, output=output, message=f"migration succeeded in {took:.1f}s")


def lint_step(spec: MigrationSpec, *, cwd: str,
              on_line: Callable[[str], None] | None = None) -> GateResult:
    """The gate's first step: the static backward-compatibility check of the SQL."""
    import tempfile

    from canary.errors import InputError
    from canary.gate.lint import lint_paths

    def show(lines: list[str]) -> str:
        for line in lines:
            if on_line is not None:
                on_line(line)
        return "\n".join(lines)

    try:
        if spec.lint_command:
            sql = subprocess.run(list(spec.lint_command), cwd=cwd, capture_output=True,
                                 text=True, timeout=spec.timeout, check=False,
                                 env={**os.environ, **dict(spec.env)})
            if sql.returncode != 0:
                return GateResult(ok=False, step="lint", output=sql.stderr[-MAX_KEPT:],
                                  message=f"lint command exited with status {sql.returncode}")
            with tempfile.TemporaryDirectory() as tmp:
                printed = os.path.join(tmp, "printed-by-lint-command.sql")
                with open(printed, "w") as f:
                    f.write(sql.stdout)
                report = lint_paths([printed], dialect=spec.lint_dialect)
        else:
            paths = [os.path.join(cwd, p) for p in spec.lint_paths]  # absolute paths stay
            report = lint_paths(paths, dialect=spec.lint_dialect)
    except (InputError, OSError, subprocess.TimeoutExpired) as exc:
        return GateResult(ok=False, step="lint", message=f"lint could not run: {exc}")
    output = show(report.render_text())
    if not report.ok:
        n = len(report.errors)
        return GateResult(ok=False, step="lint", output=output,
                          message=f"lint found {n} backward-incompatible change"
                                  f"{'s' if n != 1 else ''}: "
                                  + "; ".join(f"{e.rule}" for e in report.errors[:5]))
    return GateResult(ok=True, step="lint", output=output,
                      message=f"lint passed ({len(report.warnings)} warning(s))")
