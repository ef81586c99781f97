"""The operator's commands on a running rollout: abort, pause, resume, promote, retry.
Each one is recorded in the store; the controller driving the rollout acts on it."""

from __future__ import annotations

from typing import Annotated

import typer

from canary.cli.app import NameArg, StoreOpt
from canary.cli.errors import handled
from canary.model import Command


def _command(name: str, command: Command, store: str | None) -> None:
    from canary.rollout.commands import record_command
    from canary.rollout.wiring import open_default_store

    record_command(open_default_store(store), name, command)
    typer.echo(f"{name}: {command.value} recorded; the running controller acts on it"
               + (" (run `canary deploy` again to start the retry)"
                  if command is Command.RETRY else ""))


@handled
def abort(name: NameArg, store: StoreOpt = None) -> None:
    """Roll back: all traffic to stable."""
    _command(name, Command.ABORT, store)


@handled
def pause(name: NameArg, store: StoreOpt = None) -> None:
    """Hold the current stage (the pause clock stops)."""
    _command(name, Command.PAUSE, store)


@handled
def resume(name: NameArg, store: StoreOpt = None) -> None:
    """Continue a paused or held rollout."""
    _command(name, Command.RESUME, store)


@handled
def promote(name: NameArg, store: StoreOpt = None,
            full: Annotated[bool, typer.Option("--full", help="skip every remaining stage")]
            = False) -> None:
    """Skip the rest of the current stage (or, with --full, all stages)."""
    _command(name, Command.PROMOTE_FULL if full else Command.PROMOTE, store)


@handled
def retry(name: NameArg, store: StoreOpt = None) -> None:
    """Start a failed or aborted rollout again from its first stage."""
    _command(name, Command.RETRY, store)
