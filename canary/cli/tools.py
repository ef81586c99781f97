"""The commands around rollouts rather than of one: serve (the controller daemon), validate,
schema, backtest, record and lint-migrations."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from canary.cli.app import Output, OutputOpt, StoreOpt
from canary.cli.errors import handled
from canary.errors import InputError, TemporaryError
from canary.exits import Exit


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


@handled
def schema(kind: Annotated[SchemaKind, typer.Argument(help="rollout or policy")]) -> None:
    """Print the JSON Schema of rollout or policy files, for editors."""
    from canary.config.schema import json_schema

    document = json_schema("Rollout" if kind is SchemaKind.rollout else "AnalysisPolicy")
    typer.echo(json.dumps(document, indent=2))


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
