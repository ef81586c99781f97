"""A plain-SQL migration tool for the examples: applies `*.sql` files in order to
$DATABASE_URL (postgresql://... or sqlite:///PATH) and records each applied file in
`schema_migrations`, so it is safe to run again. Statements run one by one in autocommit
(CREATE INDEX CONCURRENTLY refuses a transaction block).

    python -m examples.migrations.migrate DIR [--pause-after-first SECONDS]

`--pause-after-first` sleeps after the first statement of a file: the tests use it to
kill a deploy while a migration is half applied.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

import psycopg

from canary.gate.lint import expand_paths, split_sql


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.migrations.migrate")
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--pause-after-first", type=float, default=0.0)
    args = parser.parse_args(argv)
    dsn = os.environ["DATABASE_URL"]
    if dsn.startswith("sqlite:///"):
        return _sqlite(dsn.removeprefix("sqlite:///"), args.paths)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                     "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
        for path in expand_paths(args.paths):
            name = Path(path).name
            if name in done:
                print(f"already applied {name}")
                continue
            print(f"applying {name}", flush=True)
            for i, stmt in enumerate(split_sql(Path(path).read_text(), dialect="postgres")):
                try:
                    conn.execute(stmt.sql.encode())
                except psycopg.Error as exc:
                    print(f"ERROR in {name}:{stmt.line}: {exc}".strip(), file=sys.stderr)
                    return 1
                if i == 0 and args.pause_after_first:
                    time.sleep(args.pause_after_first)
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
    return 0


def _sqlite(path: str, paths: list[str]) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY)")
        done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
        for file in expand_paths(paths):
            name = Path(file).name
            if name in done:
                print(f"already applied {name}")
                continue
            print(f"applying {name}", flush=True)
            for stmt in split_sql(Path(file).read_text(), dialect="sqlite"):
                try:
                    conn.execute(stmt.sql)
                except sqlite3.Error as exc:
                    print(f"ERROR in {name}:{stmt.line}: {exc}", file=sys.stderr)
                    return 1
            conn.execute("INSERT INTO schema_migrations (name) VALUES (?)", (name,))
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
