"""The commands that run and read rollouts: deploy (in the foreground, or handed to a
`canary serve`), status (once, or --watch until the end), list and history."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from canary.cli.app import NameArg, Output, OutputOpt, StoreOpt, complete_names
from canary.cli.errors import handled
from canary.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from canary.state import RolloutState
    from canary.store.base import StateStore


@handled
def deploy(
    file: Annotated[str, typer.Option("-f", "--file", help="rollout file")],
    version: Annotated[str | None, typer.Option("--version", help="overrides spec.version")] = None,
    store: StoreOpt = None,
    timeout: Annotated[str | None, typer.Option("--timeout", help="stop following after this "
                                                "long (exit 5; rerun resumes), e.g. 30m")] = None,
    poll: Annotated[float, typer.Option("--poll", help="seconds between ticks at most")] = 1.0,
    server: Annotated[str | None, typer.Option("--server", envvar="CANARY_SERVER",
                                               show_envvar=True,
                                               help="hand the rollout to this `canary serve` "
                                               "and follow it (token: $CANARY_TOKEN)")] = None,
    preflight: Annotated[bool, typer.Option(
        "--preflight/--no-preflight", help="before a new rollout, run every query of its "
        "policy once: exit 2 on unknown metrics, labels or bad PromQL, 4 if Prometheus "
        "does not answer")] = True,
    log_format: Annotated[Output, typer.Option(
        "--log-format", help="text: lines (a live panel on a terminal); json: one JSON "
        "object per line (time, level, rollout, stage, event, message)")] = Output.text,
) -> None:
    """Run (or resume) a rollout in the foreground until it ends."""
    if server:
        _deploy_remote(server, file, version=version, timeout=timeout, poll=poll)
    from canary.console.progress import JsonLineReporter, LineReporter, LiveReporter
    from canary.durations import parse_duration
    from canary.rollout.runner import exit_code
    from canary.rollout.wiring import open_default_store, prepare

    try:
        limit = parse_duration(timeout) if timeout else None
    except ValueError as exc:
        raise InputError(str(exc), field="--timeout") from None
    st = open_default_store(store)
    as_json = log_format is Output.json
    reporter: LineReporter | LiveReporter | JsonLineReporter = (
        JsonLineReporter() if as_json else LiveReporter() if sys.stdout.isatty()
        else LineReporter())
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        prepared = prepare(file, version=version, store=st, reporter=reporter, poll=poll,
                           on_gate_line=lambda line: reporter.line(f"  | {line}"),
                           preflight=preflight)
        spec = prepared.spec
        if isinstance(reporter, JsonLineReporter):
            reporter.rollout = spec.name  # every line names it, the first one too
        verb = "resuming" if prepared.resumed else "starting"
        reporter.line(f"{verb} rollout {spec.name}: {spec.service} "
                      f"{prepared.state.stable_version or '?'} -> {spec.version} via "
                      f"{prepared.runner.router.describe()}; stages "
                      f"{'/'.join(str(s.weight) for s in spec.stages)}%; policy "
                      f"{prepared.policy.name}")
        final = prepared.runner.run(timeout=limit, should_stop=lambda: stop["now"])
    finally:
        reporter.close()
    code = exit_code(final)
    verdicts = {0: "promoted", 1: "rolled back", 3: "aborted", 4: "needs a human",
                5: "still running (state kept; rerun to resume)"}
    verdict = f"{final.name}: {verdicts[code]}: {final.reason or final.message}"
    if isinstance(reporter, JsonLineReporter):
        reporter.line(verdict, event="result", level="info" if code == 0 else "warning")
    else:
        typer.echo(verdict)
    raise typer.Exit(code)


def _deploy_remote(server: str, file: str, *, version: str | None, timeout: str | None,
                   poll: float) -> NoReturn:
    from canary.durations import parse_duration
    from canary.server.client import deploy_remote

    try:
        limit = parse_duration(timeout) if timeout else None
    except ValueError as exc:
        raise InputError(str(exc), field="--timeout") from None
    raise typer.Exit(deploy_remote(server, file, version=version, timeout=limit, poll=poll))


@handled
def status(name: NameArg, store: StoreOpt = None, output: OutputOpt = Output.text,
           events: Annotated[int, typer.Option("--events", help="recent events shown")] = 20,
           watch: Annotated[bool, typer.Option(
               "-w", "--watch", help="follow the rollout, whoever drives it, until it ends; "
               "exit with its outcome: 0 promoted, 1 rolled back, 3 aborted, 4 needs a "
               "human")] = False,
           timeout: Annotated[str | None, typer.Option(
               "--timeout", help="with --watch: stop following after this long (exit 5)"
           )] = None,
           poll: Annotated[float, typer.Option("--poll", help="with --watch: seconds between "
                                               "two reads of the store")] = 1.0,
           ) -> None:
    """Where a rollout stands; with --watch, follow it until it ends."""
    from canary.console.views import status_json, status_text
    from canary.rollout.follow import store_url
    from canary.store.registry import open_store

    st = open_store(store_url(store))
    if watch:
        _watch(st, name, timeout=timeout, poll=poll, output=output)
    state = st.get(name)
    evs = st.events(state.id, limit=events)
    if output is Output.json:
        typer.echo(json.dumps(status_json(state, evs), indent=2))
    else:
        typer.echo(status_text(state, evs))


def _watch(st: StateStore, name: str, *, timeout: str | None, poll: float,
           output: Output) -> NoReturn:
    from canary.console.views import VERDICTS, progress_line, status_json
    from canary.durations import parse_duration
    from canary.rollout.follow import now, watch
    from canary.rollout.runner import exit_code

    try:
        limit = parse_duration(timeout) if timeout else None
    except ValueError as exc:
        raise InputError(str(exc), field="--timeout") from None
    if poll <= 0:
        raise InputError("--poll must be positive", field="--poll")

    def show(state: RolloutState) -> None:
        if output is Output.text:
            typer.echo(progress_line(state, now()))

    final = watch(st, name, on_change=show, timeout=limit, poll=poll)
    code = exit_code(final)
    if output is Output.json:
        typer.echo(json.dumps(status_json(final, st.events(final.id)), indent=2))
    else:
        why = final.reason or final.message
        typer.echo(f"{final.name}: {VERDICTS[code]}" + (f": {why}" if why else ""))
    raise typer.Exit(code)


@handled
def list_(store: StoreOpt = None, output: OutputOpt = Output.text) -> None:
    """Every rollout, one line each: name, phase, stage, weight, versions, age."""
    from canary.console.views import latest_per_name, list_json, list_text
    from canary.rollout.follow import now, store_url
    from canary.store.registry import open_store

    st = open_store(store_url(store))
    states = latest_per_name(st.history(None, limit=100_000))
    if output is Output.json:
        typer.echo(json.dumps(list_json(states, now()), indent=2))
    elif states:
        typer.echo(list_text(states, now()))
    else:
        typer.echo("no rollouts")


@handled
def history(name: Annotated[str | None, typer.Argument(autocompletion=complete_names)] = None,
            store: StoreOpt = None,
            output: OutputOpt = Output.text,
            limit: Annotated[int, typer.Option("--limit")] = 20) -> None:
    """Past rollouts and their event timelines."""
    from canary.console.views import history_text, status_json
    from canary.rollout.wiring import open_default_store

    st = open_default_store(store)
    states = st.history(name, limit=limit)
    if name is not None and not states:
        raise NotFoundError(f"no rollout named {name!r}")
    if output is Output.json:
        typer.echo(json.dumps([status_json(s, st.events(s.id)) for s in states], indent=2))
        return
    for s in states:
        typer.echo(history_text(s, st.events(s.id)))
        typer.echo("")
