"""The one place canary's error tree becomes exit codes, and a bug of canary becomes exit 4
with one line naming where its traceback went (never a traceback on the terminal unless
--debug asks, never 1, which promises the traffic is back on stable)."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ParamSpec

import typer

from canary.errors import CanaryError, ConflictError, InputError, NotFoundError, TemporaryError
from canary.exits import Exit

P = ParamSpec("P")

EXIT_CODES: tuple[tuple[type[CanaryError], Exit], ...] = (
    (InputError, Exit.INVALID), (NotFoundError, Exit.INVALID), (ConflictError, Exit.INVALID),
    (TemporaryError, Exit.NEEDS_HUMAN), (CanaryError, Exit.NEEDS_HUMAN))


# Set by the global --debug flag (or CANARY_DEBUG=1): print an internal error's traceback.
DEBUG = {"on": False}


def debug_env() -> bool:
    return os.environ.get("CANARY_DEBUG", "") not in ("", "0")


def handled(fn: Callable[P, None]) -> Callable[P, None]:
    """The one place the error tree becomes exit codes; never a traceback for our errors.

    Anything else is a bug of canary: exit 4 ("a human must look") with one line naming the
    debug log, never 1, which promises the traffic is back on stable.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except CanaryError as exc:
            code = next(c for kind, c in EXIT_CODES if isinstance(exc, kind))
            typer.echo(f"canary: {exc}", err=True)
            raise typer.Exit(code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if is_click_error(exc):
                raise
            internal_error(exc)
            raise typer.Exit(Exit.NEEDS_HUMAN) from None

    return wrapper


def debug_log_path() -> str:
    """Where internal errors' tracebacks go: $CANARY_DEBUG_LOG, else one file per user in
    the system temp directory (kept across runs: appended, each entry dated)."""
    explicit = os.environ.get("CANARY_DEBUG_LOG")
    if explicit:
        return explicit
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"canary-debug-{user}.log")


def internal_error(exc: BaseException) -> None:
    """One line on stderr; the traceback to the debug log (and stderr with --debug)."""
    trace = "".join(traceback.format_exception(exc))
    path = debug_log_path()
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {datetime.now(UTC).isoformat()} canary {' '.join(sys.argv[1:])}\n"
                    f"{trace}\n")
        where = f"the traceback is in {path}"
    except OSError as err:
        where = f"the traceback could not be written to {path} ({err.strerror})"
    if DEBUG["on"] or debug_env():
        typer.echo(trace.rstrip(), err=True)
    what = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(what) > 300:
        what = what[:300] + "..."
    typer.echo(f"canary: internal error: {what}; the rollout's state is kept (rerun to "
               f"resume); {where}; rerun with --debug to print it", err=True)


def is_click_error(exc: BaseException) -> bool:
    """click's usage errors and exits (typer vendors click: duck-typed)."""
    return (callable(getattr(exc, "show", None))
            and isinstance(getattr(exc, "exit_code", None), int))
