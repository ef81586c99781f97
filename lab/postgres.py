"""A throwaway PostgreSQL server for tests and examples: its own cluster in a fresh folder
under /tmp, a foreground ``postgres`` on a free loopback port, stopped by PID.

``initdb`` refuses to run as root, so when we are root the cluster belongs to the
``postgres`` user, in a folder directly under /tmp that user can reach (pytest's
``tmp_path`` is 0700 root). Durability is switched off: the data is thrown away anyway.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from lab.proc import Server, free_port

PG_BIN = os.environ.get("CANARY_PG_BIN", "/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"


def available() -> bool:
    """Whether the PostgreSQL binaries are installed (tests skip without them)."""
    return all(os.access(os.path.join(PG_BIN, b), os.X_OK) for b in ("initdb", "postgres"))


def start_postgres(*, port: int | None = None, database: str = "canary",
                   timeout: float = 30.0) -> Server:
    """A running server with ``database`` created; ``info["dsn"]`` connects to it.

    Stop it with ``stop_postgres`` (which also removes its folder).
    """
    user = SUPERUSER if os.geteuid() == 0 else None
    folder = tempfile.mkdtemp(prefix="canary-pg-", dir="/tmp")
    data, sockets = os.path.join(folder, "data"), os.path.join(folder, "sock")
    os.mkdir(sockets)
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (folder, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = port if port is not None else free_port()
    server = Server(name="postgres", argv=[
        os.path.join(PG_BIN, "postgres"), "-D", data, "-p", str(port), "-k", sockets,
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
        "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
    ], log_path=os.path.join(folder, "postgres.log"))
    server.info.update(dir=folder, data=data, port=port, database=database,
                       dsn=f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}")
    try:
        _run([os.path.join(PG_BIN, "initdb"), "-D", data, "-U", SUPERUSER, "-A", "trust",
              "-E", "UTF8", "--locale=C", "--no-sync"], user=user)
        server.start(user=user)
        _wait_ready(server, port=port, timeout=timeout)
        _create_database(port, database)
    except BaseException:
        stop_postgres(server)
        raise
    return server


def stop_postgres(server: Server, *, timeout: float = 10.0) -> None:
    """Fast shutdown by PID (SIGINT: PostgreSQL's SIGTERM would wait for every client to
    disconnect), SIGKILL if it hangs, then remove the cluster's folder."""
    proc = server.proc
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            server.stop()
    folder = server.info.get("dir")
    if isinstance(folder, str) and folder.startswith("/tmp/canary-pg-"):
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def running_postgres(*, port: int | None = None, database: str = "canary") -> Iterator[Server]:
    server = start_postgres(port=port, database=database)
    try:
        yield server
    finally:
        stop_postgres(server)


def _run(argv: list[str], *, user: str | None) -> None:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} ... exited {done.returncode}:\n{done.stdout}"
                           f"{done.stderr}")


def _wait_ready(server: Server, *, port: int, timeout: float) -> None:
    """Bounded wait for a real connection (an open port is not enough: the server
    accepts TCP before it has finished starting up and answers "starting up")."""
    deadline = time.monotonic() + timeout
    while True:
        if not server.alive():
            raise RuntimeError(f"postgres exited while starting:\n{server.log_tail()}")
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER,
                                 dbname="postgres", connect_timeout=2):
                return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"postgres not ready after {timeout}s:\n{server.log_tail()}")
        time.sleep(0.05)


def _create_database(port: int, database: str) -> None:
    with psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
