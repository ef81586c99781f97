"""The migration gate end to end: a real PostgreSQL, a real migration tool, a real HAProxy
whose canary server must see no request unless every gate step passed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from canary.store.sqlite import SQLiteStore
from lab.proc import wait_until
from tests.e2e.conftest import REPO, Stack, canary_cmd, canary_env, run_canary, write_rollout

MakeStack = Callable[..., Stack]
MIG = REPO / "examples" / "migrations"
NO_METRICS = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: time-only
spec:
  interval: 1s
"""


def gate_rollout(stack: Stack, dsn: str, *, lint: str = "", migrate: list[str] | None = None,
                 compat: bool = True, idempotent: bool = False, pause: str = "1s") -> Path:
    policy = stack.dir / "policy.yaml"
    policy.write_text(NO_METRICS)
    parts = ["  migration:"]
    if lint:
        parts += ["    lint:", f"      paths: [{lint}]"]
    if migrate:
        argv = [sys.executable, "-m", "examples.migrations.migrate", *migrate]
        parts.append(f"    command: {json.dumps(argv)}")
        parts.append("    timeout: 60s")
    parts.append(f"    idempotent: {str(idempotent).lower()}")
    parts.append(f"    workdir: {REPO}")
    parts.append(f"    env: {{DATABASE_URL: '{dsn}', PYTHONPATH: '{REPO}'}}")
    if compat:
        parts += ["    compatCheck:",
                  f"      command: [{sys.executable}, -m, examples.migrations.compat_check]"]
    return write_rollout(stack, version="2.0.0", policy=policy, pause=pause, stages="[50, 100]",
                         migration="\n".join(parts) + "\n")


def events(stack: Stack) -> list[tuple[str, dict[str, object]]]:
    store = SQLiteStore(stack.store.removeprefix("sqlite:///"))
    try:
        return [(e.kind, dict(e.data)) for e in store.events(store.get("checkout").id)]
    finally:
        store.close()


def applied(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
            return []
        return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def test_safe_migration_passes_every_step_then_rollout_proceeds(
        stack_for: MakeStack, postgres_dsn: str) -> None:
    stack = stack_for("2.0.0", rps=20)
    f = gate_rollout(stack, postgres_dsn, lint=f"'{MIG}/safe'", migrate=[f"{MIG}/safe"])
    res = run_canary(stack, "deploy", "-f", str(f))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "applying 0002_expand_orders.sql" in res.stdout  # migration output streamed
    assert "version 1.4's queries still work" in res.stdout
    assert applied(postgres_dsn) == ["0001_create_orders.sql", "0002_expand_orders.sql",
                                     "0003_contract_legacy_note.sql"]
    steps = [d["step"] for k, d in events(stack) if k == "gate-succeeded"]
    assert steps == ["lint", "migrate", "compat"]
    assert stack.all_on("canary-1")


def test_unsafe_migration_is_blocked_by_lint_before_anything_runs(
        stack_for: MakeStack, postgres_dsn: str) -> None:
    stack = stack_for("2.0.0", rps=20)
    f = gate_rollout(stack, postgres_dsn, lint=f"'{MIG}/unsafe'",
                     migrate=[f"{MIG}/safe/0001_create_orders.sql", f"{MIG}/unsafe"])
    res = run_canary(stack, "deploy", "-f", str(f))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "rename-column" in res.stdout and "drop-column" in res.stdout
    assert applied(postgres_dsn) == []  # the migration never ran
    assert stack.canary_sessions() == 0
    assert "lint" in json.dumps(stack.slack.payloads)


def test_compat_check_failing_on_the_migrated_schema_rejects(
        stack_for: MakeStack, postgres_dsn: str) -> None:
    stack = stack_for("2.0.0", rps=20)
    f = gate_rollout(stack, postgres_dsn,
                     migrate=[f"{MIG}/safe/0001_create_orders.sql", f"{MIG}/unsafe"])
    res = run_canary(stack, "deploy", "-f", str(f))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "version 1.4 broke against the new schema" in res.stdout
    status = json.loads(run_canary(stack, "status", "checkout", "-o", "json").stdout)
    assert "compat" in status["reason"]
    assert stack.canary_sessions() == 0


def test_kill_after_migration_then_resume_does_not_reapply(
        stack_for: MakeStack, postgres_dsn: str) -> None:
    stack = stack_for("2.0.0", rps=20)
    f = gate_rollout(stack, postgres_dsn, migrate=[f"{MIG}/safe"], pause="30s")
    proc = subprocess.Popen(canary_cmd("deploy", "-f", str(f)), env=canary_env(stack),
                            cwd=str(stack.dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: any(k == "stage-reached" for k, _ in events(stack)), timeout=60,
                   what="the first stage")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    res = run_canary(stack, "promote", "checkout", "--full")
    assert res.returncode == 0
    res = run_canary(stack, "deploy", "-f", str(f))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "applying" not in res.stdout  # the migration command did not run again
    started = [d["step"] for k, d in events(stack) if k == "gate-started"]
    assert started == ["migrate", "compat"]


def test_kill_during_non_idempotent_migration_needs_a_human(
        stack_for: MakeStack, postgres_dsn: str) -> None:
    stack = stack_for("2.0.0", rps=20)
    f = gate_rollout(stack, postgres_dsn, compat=False,
                     migrate=[f"{MIG}/safe", "--pause-after-first", "30"])
    proc = subprocess.Popen(canary_cmd("deploy", "-f", str(f)), env=canary_env(stack),
                            cwd=str(stack.dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: len(applied(postgres_dsn)) == 0 and _has_table(postgres_dsn),
                   timeout=60, what="the migration's first statement")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the deploy and its migration child
        proc.wait()
    res = run_canary(stack, "deploy", "-f", str(f))
    assert res.returncode == 4, res.stdout + res.stderr
    assert "interrupted" in res.stdout
    assert "needs-human" in [k for k, _ in events(stack)]
    assert any("human" in json.dumps(p) or "interrupted" in json.dumps(p)
               for p in stack.slack.payloads)
    assert stack.canary_sessions() == 0


def _has_table(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT to_regclass('customers')").fetchone() != (None,)


def _sqlite_applied(db: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def sqlite_rollout(stack: Stack, db: Path, which: str) -> Path:
    policy = stack.dir / "policy.yaml"
    policy.write_text(NO_METRICS)
    folder = MIG / "sqlite"
    argv = [sys.executable, "-m", "examples.migrations.migrate",
            f"{folder}/safe/0001_create_orders.sql", f"{folder}/{which}"]
    migration = f"""  migration:
    lint:
      paths: ['{folder}/{which}']
      dialect: sqlite
    command: {json.dumps(argv)}
    workdir: {REPO}
    env: {{DATABASE_URL: 'sqlite:///{db}', PYTHONPATH: '{REPO}'}}
"""
    return write_rollout(stack, version="2.0.0", policy=policy, pause="1s", stages="[50, 100]",
                         migration=migration)


def test_sqlite_safe_migration_passes_and_rollout_proceeds(stack_for: MakeStack,
                                                           tmp_path: Path) -> None:
    stack = stack_for("2.0.0", rps=20)
    db = tmp_path / "shop.db"
    res = run_canary(stack, "deploy", "-f", str(sqlite_rollout(stack, db, "safe")))
    assert res.returncode == 0, res.stdout + res.stderr
    assert _sqlite_applied(db) == ["0001_create_orders.sql", "0002_expand_orders.sql"]
    assert stack.all_on("canary-1")


def test_sqlite_unsafe_migration_is_blocked_by_lint(stack_for: MakeStack,
                                                    tmp_path: Path) -> None:
    stack = stack_for("2.0.0", rps=20)
    db = tmp_path / "shop.db"
    res = run_canary(stack, "deploy", "-f", str(sqlite_rollout(stack, db, "unsafe")))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "rename-column" in res.stdout and "drop-column" in res.stdout
    assert _sqlite_applied(db) == [] and stack.canary_sessions() == 0
