"""The typer app, the options every command shares, the global flags, and ``main``: the
console entry point that turns whatever a command raises into an exit code."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, NoReturn

import typer

from canary.cli.errors import DEBUG, debug_env, internal_error, is_click_error
from canary.exits import Exit

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="canary: progressive delivery with automatic analysis and rollback.")


class Output(StrEnum):
    text = "text"
    json = "json"


StoreOpt = Annotated[str | None, typer.Option(
    "--store", envvar="CANARY_STORE", show_envvar=True,
    help="state store URL: sqlite:///PATH or postgresql://... "
    "(default sqlite:///.canary/state.db)")]
OutputOpt = Annotated[Output, typer.Option("-o", "--output", help="text or json")]


def complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Rollout names from the store for shell completion (never slow, never an error)."""
    from canary.rollout.follow import rollout_names

    return rollout_names(ctx.params.get("store"), incomplete)


NameArg = Annotated[str, typer.Argument(help="rollout name", autocompletion=complete_names,
                                        show_default=False)]


def _show_version(value: bool) -> None:
    if value:
        from canary import __version__

        typer.echo(f"canary {__version__}")
        raise typer.Exit(Exit.OK)


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="on an internal error, print the "
                                        "traceback too (it is always written to "
                                        "$CANARY_DEBUG_LOG or canary-debug-*.log in the "
                                        "temp directory)")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="print the version and exit", is_eager=True,
        callback=_show_version)] = False,
) -> None:
    """canary: progressive delivery with automatic analysis and rollback."""
    DEBUG["on"] = debug or debug_env()


def main() -> None:
    """Console entry point: one place maps the error tree to exit codes."""
    try:
        # Without standalone mode click returns a typer.Exit's code instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _safe_exit("interrupted; the rollout's state is kept: rerun to resume", Exit.RUNNING)
    except Exception as exc:
        if is_click_error(exc):  # a usage error: bad option or argument
            exc.show()  # type: ignore[attr-defined]
            sys.exit(Exit.INVALID)
        if type(exc).__name__ == "Abort":
            _safe_exit("aborted", Exit.RUNNING)
        internal_error(exc)  # outside any command (option parsing, a callback): a bug
        sys.exit(Exit.NEEDS_HUMAN)


def _safe_exit(message: str, code: int) -> NoReturn:
    typer.echo(f"canary: {message}", err=True)
    sys.exit(code)
