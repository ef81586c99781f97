"""``canary lint-migrations``: the lint's printing and exit codes in one function, so the
CLI wiring in ``cli.py`` is a single call and tests need no CLI runner.

Exit codes follow the contract: 0 nothing blocks (warnings are printed), 1 errors found,
2 bad input (missing file, unknown dialect or output format).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from canary.errors import InputError
from canary.gate.lint import lint_paths

OUTPUTS = ("text", "json")


def run_lint(paths: Sequence[str], dialect: str = "postgres", output: str = "text", *,
             out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Lint ``paths``, print the report to ``out`` (stdout), return the exit code."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        if output not in OUTPUTS:
            raise InputError(f"unknown output format {output!r}; expected text or json",
                             field="output")
        report = lint_paths(paths, dialect=dialect)
    except InputError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if output == "json":
        print(json.dumps(report.to_json(), indent=2), file=out)
    else:
        for line in report.render_text():
            print(line, file=out)
    return 0 if report.ok else 1
