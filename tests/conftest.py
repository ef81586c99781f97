"""Shared test configuration: servers more than one test folder needs, and the fast lane.

A real PostgreSQL: one server per session (started on first use), one schema per test
(a schema takes milliseconds to create; a database about 0.3 s).

The fast lane (`scripts/test --fast`, i.e. `-m "not servers"`): every test that starts a
real server is marked ``servers`` here, from the fixtures it uses (directly or through
other fixtures), the parameters that pick a server-backed fixture, or the folder it lives
in. The mark is not taken on trust: in the fast lane the lab refuses to start a server
(``CANARY_TEST_NO_SERVERS``), so a test that starts one without being marked fails and
names itself.

typer's CliRunner rebuilds the whole click command tree of an app, from every command's type
hints, on each ``invoke`` (about 40 ms of CPU, most of a `canary validate` test; 300 of them
in tests/fuzz alone). The tree depends only on the commands registered on the app, all
registered when canary.cli is imported, so it is built once per app object here. Each
invoke still parses its arguments and runs the command through that same tree.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

import psycopg
import pytest
import typer.testing
from psycopg import sql

from lab import postgres
from lab.proc import Server

_names = itertools.count(1)

# The name CliRunner.invoke calls (typer/testing.py imports typer.main.get_command under it).
typer.testing._get_command = functools.cache(typer.testing._get_command)  # type: ignore[attr-defined]

# Fixtures that start (or need) a real server process.
SERVER_FIXTURES = frozenset({
    "postgres_server", "lab", "scenarios", "haproxy_server", "nginx_server", "start_serve",
    "stack_for", "browser", "haproxy_lb", "nginx_lb",
})
# Parameter values that make a parametrised fixture start a server.
SERVER_PARAMS = frozenset({"postgres", "haproxy_harness", "nginx_harness"})
# Folders whose every test drives real servers end to end.
SERVER_FOLDERS = frozenset({"e2e", "serve", "server"})


def _needs_servers(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    if names & SERVER_FIXTURES:
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(isinstance(v, str) and v in SERVER_PARAMS
                                    for v in callspec.params.values()):
        return True
    return bool(SERVER_FOLDERS & set(item.path.parent.parts[-1:]))


# Longest files first, for xdist (scripts/test: --dist loadfile --no-loadscope-reorder): a
# worker takes a whole file, the next file in this order whenever it is free, so a long file
# handed out last keeps one worker busy while the others idle. (xdist's own order, most
# tests first, put files of 2-5 slow end-to-end tests last.) Rough seconds of the slowest
# files on a 2-core machine, from `--durations` of a full run (/tmp/ci4.log, 4 workers, a
# loaded machine, divided by ~3.6) and of the fast lane; any other file counts its tests.
# A stale figure only costs time, never a result: the order of files is all it changes.
SLOW_FILES = {
    "tests/e2e/test_deploy.py": 300, "tests/packaging/test_wheel.py": 280,
    "tests/e2e/test_gate.py": 220, "tests/server/test_api.py": 190,
    "tests/e2e/test_crash_anywhere.py": 175, "tests/e2e/test_faults.py": 150,
    "tests/server/test_hostile.py": 120, "tests/server/test_image.py": 90,
    "tests/e2e/test_secrets.py": 90, "tests/rollout/test_transitions.py": 70,
    "tests/store/test_sqlite_faults.py": 65, "tests/rollout/test_strategies.py": 55,
    "tests/metrics/test_record_agrees_live.py": 50, "tests/e2e/test_strategies.py": 45,
    "tests/packaging/test_ci_examples.py": 45, "tests/cli/test_completion.py": 35,
    "tests/analysis/test_sequential.py": 30, "tests/config/test_internal_error.py": 25,
    "tests/metrics/test_prometheus_faults.py": 25, "tests/rollout/test_endings.py": 20,
    "tests/cli/test_watch.py": 15, "tests/hooks/test_hooks.py": 10,
    "tests/fuzz/test_fuzz.py": 10,
}
SERVER_TEST_SECONDS, TEST_SECONDS = 3.0, 0.05


def _longest_files_first(items: list[pytest.Item]) -> None:
    weights: dict[str, float] = {}
    for item in items:
        file = item.nodeid.split("::", 1)[0]
        cost = SERVER_TEST_SECONDS if item.get_closest_marker("servers") else TEST_SECONDS
        weights[file] = weights.get(file, 0.0) + cost
    for file in weights:
        weights[file] = max(weights[file], SLOW_FILES.get(file, 0.0))
    # A stable sort: each file's tests keep their order, and ties their files' order.
    items.sort(key=lambda item: -weights[item.nodeid.split("::", 1)[0]])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_servers(item) and item.get_closest_marker("servers") is None:
            item.add_marker(pytest.mark.servers)
    if hasattr(config, "workerinput"):  # an xdist worker; a plain run keeps its order
        _longest_files_first(items)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    if not postgres.available():
        pytest.skip(f"PostgreSQL binaries not found in {postgres.PG_BIN}")
    server = postgres.start_postgres()
    try:
        yield server
    finally:
        postgres.stop_postgres(server)


@pytest.fixture
def postgres_dsn(postgres_server: Server) -> Iterator[str]:
    """A DSN whose search_path is a fresh, empty schema; dropped afterwards."""
    name = f"gate_{next(_names)}"
    dsn = str(postgres_server.info["dsn"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield f"{dsn}?options=-csearch_path%3D{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
