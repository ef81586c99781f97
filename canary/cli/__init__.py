"""The `canary` command. Thin: parse, call one function, print, map errors to exit codes.

Exit codes (docs/contract.md): 0 promoted/succeeded, 1 rolled back or rejected, 2 invalid input,
3 aborted, 4 needs a human, 5 still running when --timeout expired.

app.py holds the typer app, the shared options and ``main``; errors.py the one place errors
become exit codes; the commands live in rollouts.py (deploy, status, list, history),
control.py (the operator's abort, pause, resume, promote, retry) and tools.py (serve,
validate, schema, backtest, record, lint-migrations). Every command imports what it needs
when it runs, so ``canary status`` starts without loading the engine.
"""

from __future__ import annotations

from canary.cli import control, rollouts, tools
from canary.cli.app import app, main
from canary.cli.errors import debug_log_path, handled

__all__ = ["app", "debug_log_path", "handled", "main"]

# Registered here, in one table, because `canary --help` lists commands in the order they
# were added (typer keeps it): the order users have always seen.
for _name, _command in (
    ("deploy", rollouts.deploy), ("serve", tools.serve), ("status", rollouts.status),
    ("list", rollouts.list_), ("history", rollouts.history), ("abort", control.abort),
    ("pause", control.pause), ("resume", control.resume), ("promote", control.promote),
    ("retry", control.retry), ("validate", tools.validate), ("schema", tools.schema),
    ("backtest", tools.backtest), ("record", tools.record),
    ("lint-migrations", tools.lint_migrations),
):
    app.command(_name)(_command)
