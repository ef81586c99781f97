"""The `canary` command. Thin: parse, call one function, print, map errors to exit codes.

Exit codes (docs/contract.md): 0 promoted/succeeded, 1 rolled back or rejected, 2 invalid input,
3 aborted, 4 needs a human, 5 still running when --timeout expired.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, NoReturn, ParamSpec

import typer

from canary.errors import CanaryError, ConflictError, InputError, NotFoundError, TemporaryError
from canary.exits import Exit
from canary.model import Command

if TYPE_CHECKING:
    from canary.state import RolloutState
    from canary.store.base import StateStore

P = ParamSpec("P")

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


def _complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Rollout names from the store for shell completion (never slow, never an error)."""
    from canary.rollout.follow import rollout_names

    return rollout_names(ctx.params.get("store"), incomplete)


NameArg = Annotated[str, typer.Argument(help="rollout name", autocompletion=_complete_names,
                                        show_default=False)]


def _show_version(value: bool) -> None:
    if value:
        from canary import __version__

        typer.echo(f"canary {__version__}")
        raise typer.Exit(Exit.OK)


EXIT_CODES: tuple[tuple[type[CanaryError], Exit], ...] = (
    (InputError, Exit.INVALID), (NotFoundError, Exit.INVALID), (ConflictError, Exit.INVALID),
    (TemporaryError, Exit.NEEDS_HUMAN), (CanaryError, Exit.NEEDS_HUMAN))


# Set by the global --debug flag (or CANARY_DEBUG=1): print an internal error's traceback.
_DEBUG = {"on": False}


def _debug_env() -> bool:
    return os.environ.get("CANARY_DEBUG", "") not in ("", "0")


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
    _DEBUG["on"] = debug or _debug_env()


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
            if _is_click_error(exc):
                raise
            _internal_error(exc)
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


def _internal_error(exc: BaseException) -> None:
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
    if _DEBUG["on"] or _debug_env():
        typer.echo(trace.rstrip(), err=True)
    what = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(what) > 300:
        what = what[:300] + "..."
    typer.echo(f"canary: internal error: {what}; the rollout's state is kept (rerun to "
               f"resume); {where}; rerun with --debug to print it", err=True)


def _is_click_error(exc: BaseException) -> bool:
    """click's usage errors and exits (typer vendors click: duck-typed)."""
    return (callable(getattr(exc, "show", None))
            and isinstance(getattr(exc, "exit_code", None), int))


@app.command()
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


@app.command()
@handled
def serve(
    store: StoreOpt = None,
    listen: Annotated[str, typer.Option("--listen", envvar="CANARY_LISTEN",
                                        help="HOST:PORT of the API, status page "
                                        "and /metrics")] = "127.0.0.1:8080",
    tick: Annotated[str, typer.Option("--tick", help="longest time between two ticks of a "
                                      "rollout")] = "1s",
    workers: Annotated[int, typer.Option("--workers", help="threads ticking rollouts")] = 32,
    lease_ttl: Annotated[str, typer.Option("--lease-ttl", help="how long a rollout stays "
                                           "with a replica that stopped renewing")] = "30s",
    batch_max_age: Annotated[str, typer.Option(
        "--batch-max-age", help="share one grouped Prometheus query per metric among all "
        "rollouts, reusing its answer this long (0 turns batching off)")] = "2s",
    allow_env: Annotated[list[str] | None, typer.Option(
        "--allow-env", help="glob of environment variables documents posted to the API may "
        "expand as ${VAR} (repeatable, e.g. 'DEPLOY_*'); default none; "
        "CANARY_API_TOKENS_* never")] = None,
    log_format: Annotated[Output, typer.Option(
        "--log-format", envvar="CANARY_LOG_FORMAT", help="text, or json: one object per line "
        "(time, level, rollout, stage, event, message)")] = Output.text,
    query_slots: Annotated[int, typer.Option(
        "--query-slots", help="Prometheus queries run at once at most; a check that cannot "
        "get a slot in its budget is inconclusive (the rollout holds)")] = 16,
    read_timeout: Annotated[str, typer.Option(
        "--read-timeout", help="a client must send its whole request within this long "
        "(headers and body), or the connection is closed")] = "10s",
) -> None:
    """Drive every active rollout of the store; API, status page and /metrics over HTTP."""
    from canary.durations import parse_duration
    from canary.rollout.wiring import store_url
    from canary.server.process import run_serve

    try:
        every, ttl = parse_duration(tick), parse_duration(lease_ttl)
        batch, read = parse_duration(batch_max_age), parse_duration(read_timeout)
    except ValueError as exc:
        raise InputError(str(exc), field="--tick/--lease-ttl/--read-timeout") from None
    if every <= 0 or ttl <= 0 or workers < 1 or query_slots < 1 or read <= 0:
        raise InputError("--tick, --lease-ttl, --workers, --query-slots and --read-timeout "
                         "must be positive")
    raise typer.Exit(run_serve(store_url(store), listen=listen, tick=every, workers=workers,
                               lease_ttl=ttl, batch_max_age=batch, allow_env=allow_env or (),
                               log_format=log_format.value, query_slots=query_slots,
                               read_timeout=read))


@app.command()
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


@app.command("list")
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


@app.command()
@handled
def history(name: Annotated[str | None, typer.Argument(autocompletion=_complete_names)] = None,
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


def _command(name: str, command: Command, store: str | None) -> None:
    from canary.rollout.commands import record_command
    from canary.rollout.wiring import open_default_store

    record_command(open_default_store(store), name, command)
    typer.echo(f"{name}: {command.value} recorded; the running controller acts on it"
               + (" (run `canary deploy` again to start the retry)"
                  if command is Command.RETRY else ""))


@app.command()
@handled
def abort(name: NameArg, store: StoreOpt = None) -> None:
    """Roll back: all traffic to stable."""
    _command(name, Command.ABORT, store)


@app.command()
@handled
def pause(name: NameArg, store: StoreOpt = None) -> None:
    """Hold the current stage (the pause clock stops)."""
    _command(name, Command.PAUSE, store)


@app.command()
@handled
def resume(name: NameArg, store: StoreOpt = None) -> None:
    """Continue a paused or held rollout."""
    _command(name, Command.RESUME, store)


@app.command()
@handled
def promote(name: NameArg, store: StoreOpt = None,
            full: Annotated[bool, typer.Option("--full", help="skip every remaining stage")]
            = False) -> None:
    """Skip the rest of the current stage (or, with --full, all stages)."""
    _command(name, Command.PROMOTE_FULL if full else Command.PROMOTE, store)


@app.command()
@handled
def retry(name: NameArg, store: StoreOpt = None) -> None:
    """Start a failed or aborted rollout again from its first stage."""
    _command(name, Command.RETRY, store)


@app.command()
@handled
def validate(
    files: Annotated[list[str], typer.Argument(help="rollout or policy files")],
    preflight: Annotated[bool, typer.Option(
        "--preflight", help="also run every query of the policy once against its Prometheus: "
        "unknown metrics or labels, rejected PromQL, an unreachable Prometheus")] = False,
) -> None:
    """Check rollout and policy files (exit 0 or 2)."""
    from canary.config.spec import load_any
    from canary.rollout.preflight import preflight_file, refuse

    bad = 0
    for f in files:
        try:
            kind = load_any(f)
            if preflight:
                refuse(preflight_file(f), file=f)
            typer.echo(f"{f}: valid {kind}{' (preflight passed)' if preflight else ''}")
        except (InputError, TemporaryError) as exc:  # validate exits 0 or 2 (docs/contract.md)
            typer.echo(f"canary: {exc}", err=True)
            bad += 1
    if bad:
        raise typer.Exit(Exit.INVALID)


class SchemaKind(StrEnum):
    rollout = "rollout"
    policy = "policy"


@app.command()
@handled
def schema(kind: Annotated[SchemaKind, typer.Argument(help="rollout or policy")]) -> None:
    """Print the JSON Schema of rollout or policy files, for editors."""
    from canary.config.schema import json_schema

    document = json_schema("Rollout" if kind is SchemaKind.rollout else "AnalysisPolicy")
    typer.echo(json.dumps(document, indent=2))


@app.command()
@handled
def backtest(
    policy: Annotated[str, typer.Option("--policy", help="a policy file, or the name of a "
                                        "shipped policy")],
    data: Annotated[list[str], typer.Option("--data", help="recorded traffic: files or "
                                            "directories of *.json (docs/contract.md)")],
    more: Annotated[list[str] | None, typer.Argument(help="more recordings",
                                                     show_default=False)] = None,
    output: OutputOpt = Output.text,
) -> None:
    """Replay a policy over recorded traffic: one decision per scenario."""
    import os

    from canary.config.spec import load_policy, resolve_policy_path
    from canary.replay.backtest import backtest_files

    spec = load_policy(resolve_policy_path(policy, base_dir=os.getcwd()))
    for answer in backtest_files(spec, [*data, *(more or [])]):
        if output is Output.json:
            typer.echo(json.dumps(answer))
        else:
            typer.echo(f"{answer['scenario']}: {answer['decision']} at "
                       f"{answer['decidedAt']:g}s: {answer['reason']}")


@app.command()
@handled
def record(
    service: Annotated[str, typer.Option("--service")],
    canary_version: Annotated[str, typer.Option("--canary", help="the new version")],
    stable_version: Annotated[str, typer.Option("--stable", help="the old version")],
    start: Annotated[str, typer.Option("--start", help="ISO time, e.g. 2026-11-20T10:00:00Z")],
    end: Annotated[str, typer.Option("--end", help="ISO time")],
    interval: Annotated[str, typer.Option("--interval", help="one point per interval")] = "15s",
    policy: Annotated[str, typer.Option("--policy", help="whose family and labels to read")]
    = "default",
    prometheus: Annotated[str | None, typer.Option("--prometheus", help="overrides the "
                                                   "policy's Prometheus URL")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    out: Annotated[str | None, typer.Option("-o", "--out", help="file (default: stdout)")]
    = None,
) -> None:
    """Pull a past window from Prometheus as recorded traffic for `canary backtest`."""
    import os
    from datetime import datetime

    from canary.config.spec import load_policy, resolve_policy_path
    from canary.durations import parse_duration
    from canary.replay.record import record as pull
    from canary.replay.recording import to_json

    try:
        t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"expected an ISO time: {exc}", field="--start/--end") from None
    try:
        step = parse_duration(interval)
    except ValueError as exc:
        raise InputError(str(exc), field="--interval") from None
    spec = load_policy(resolve_policy_path(policy, base_dir=os.getcwd()))
    rec = pull(spec, service=service, canary=canary_version, stable=stable_version, start=t0,
               end=t1, interval=step, name=name or f"{service}-{t0:%Y-%m-%dT%H%M}",
               prometheus_url=prometheus)
    text = json.dumps(to_json(rec))
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        typer.echo(f"{out}: {len(rec.series)} intervals of {service} {stable_version} vs "
                   f"{canary_version}")
    else:
        typer.echo(text)


@app.command("lint-migrations")
@handled
def lint_migrations(
    paths: Annotated[list[str], typer.Argument(help="SQL files, directories or globs")],
    dialect: Annotated[str, typer.Option("--dialect", help="postgres, mysql or sqlite")]
    = "postgres",
    output: OutputOpt = Output.text,
) -> None:
    """Check SQL migrations stay compatible with the running version (exit 0, 1, or 2)."""
    from canary.gate.lint_cli import run_lint

    raise typer.Exit(run_lint(paths, dialect, output.value))


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
        if _is_click_error(exc):  # a usage error: bad option or argument
            exc.show()  # type: ignore[attr-defined]
            sys.exit(Exit.INVALID)
        if type(exc).__name__ == "Abort":
            _safe_exit("aborted", Exit.RUNNING)
        _internal_error(exc)  # outside any command (option parsing, a callback): a bug
        sys.exit(Exit.NEEDS_HUMAN)


def _safe_exit(message: str, code: int) -> NoReturn:
    typer.echo(f"canary: {message}", err=True)
    sys.exit(code)
