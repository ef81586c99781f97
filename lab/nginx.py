"""A real nginx for tests and examples, in a prefix of its own, with a managed upstream.

The upstream's server lines sit between canary's markers and start in the state
a rollback writes (canary servers ``down``), so the first request already
goes where the controller expects. nginx runs in the foreground (``daemon off``) as a
plain process stopped by its PID; logs, pid file and every temp path live in the prefix.

A reload is asynchronous: nginx answers ``-s reload`` at once and starts new workers
shortly after, then tells the old ones to stop. ``wait_for_reload`` waits until only
workers started after the change remain, which is when every new connection gets the new
split (old workers finish their open keep-alive connections first).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from canary.model import Weights
from canary.routers.features import Match, Routes, Sticky
from canary.routers.nginx_blocks import render_servers
from canary.routers.nginx_routes import render_location, render_routes
from lab.proc import Server, free_port, port_open, wait_until

NGINX = "/usr/sbin/nginx"
_TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render_config(*, upstream: str, stable: Sequence[str], canary: Sequence[str],
                  port: int, match: Match | None = None, sticky: Sticky | None = None,
                  routes: bool = False) -> str:
    """nginx.conf; with ``routes`` the blocks for matches, affinity and mirroring too,
    rendered as the nginx router renders them at 0% (see canary/routers/nginx_routes.py)."""
    servers = render_servers(Weights(canary=0), stable=stable, canary=canary,
                             indent="        ")
    location = f"        location / {{ proxy_pass http://{upstream}; }}\n"
    http_block = ""
    if routes:
        args = {"upstream": upstream, "stable": stable, "canary": canary,
                "weights": Weights(canary=0), "routes": Routes(), "match": match,
                "sticky": sticky}
        http_block = (f"    # canary:begin {upstream} routes\n"
                      + "".join(f"    {line}\n" for line in render_routes(**args))
                      + f"    # canary:end {upstream} routes\n")
        location = ("        location / {\n"
                    f"            # canary:begin {upstream} location\n"
                    + "".join(f"            {line}\n" for line in render_location(**args))
                    + f"            # canary:end {upstream} location\n"
                    "        }\n")
    temps = "".join(f"    {t}_temp_path tmp/{t};\n" for t in _TEMPS)
    return (
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;\n"
        "pid nginx.pid;\n"
        "error_log logs/error.log notice;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    access_log off;\n"
        f"{temps}"
        f"    upstream {upstream} {{\n"
        f"        # canary:begin {upstream}\n"
        + "".join(s + "\n" for s in servers)
        + f"        # canary:end {upstream}\n"
        "    }\n"
        f"{http_block}"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f"{location}"
        "    }\n"
        "}\n"
    )


def nginx_argv(server: Server, *args: str) -> list[str]:
    """``nginx`` with this server's prefix, error log and config, then ``args``."""
    info = server.info
    return [NGINX, "-p", str(info["prefix"]), "-e", str(info["error_log"]),
            "-c", str(info["config"]), *args]


def start_nginx(workdir: str | Path, *, upstream: str, stable: Sequence[str],
                canary: Sequence[str], port: int | None = None,
                timeout: float = 10.0, match: Match | None = None,
                sticky: Sticky | None = None, routes: bool = False) -> Server:
    """Start nginx in prefix ``workdir`` proxying ``upstream`` to the given host:ports.

    ``Server.info`` holds ``port``, ``prefix``, ``config``, ``error_log``, ``upstream``.
    """
    prefix = Path(workdir).resolve()
    for sub in ("conf", "logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = prefix / "conf" / "nginx.conf"
    config.write_text(render_config(upstream=upstream, stable=stable, canary=canary,
                                    port=port, match=match, sticky=sticky, routes=routes))
    server = Server(name="nginx", argv=[], log_path=str(prefix / "logs" / "stdout.log"))
    server.info.update(port=port, prefix=str(prefix), config=str(config),
                       error_log=str(prefix / "logs" / "error.log"), upstream=upstream)
    check = subprocess.run(nginx_argv(server, "-t"), capture_output=True, text=True,
                           check=False)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t rejected {config}:\n{check.stderr}")
    server.argv = nginx_argv(server)
    server.start()
    try:  # a process that died is "done" too, so a bad start fails fast
        wait_until(lambda: not server.alive() or (port_open(port) and bool(workers(server))),
                   timeout=timeout, what="nginx to listen")
    except TimeoutError:
        server.stop()
        raise RuntimeError(f"nginx did not come up:\n{server.log_tail()}") from None
    if not server.alive():
        raise RuntimeError(f"nginx exited:\n{server.log_tail()}")
    return server


def workers(server: Server) -> set[int]:
    """PIDs of the master's children (its workers, old and new during a reload)."""
    pid = server.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children}


def wait_for_reload(server: Server, before: set[int], *, timeout: float = 5.0) -> float:
    """Wait until the workers in ``before`` are gone and a new one runs; seconds taken.

    A new worker alone is not enough: until the old ones get their shutdown signal they
    still accept connections, with the old split.
    """
    start = time.monotonic()

    def reloaded() -> bool:
        now = workers(server)
        return bool(now - before) and not now & before

    wait_until(reloaded, timeout=timeout, interval=0.005,
               what="nginx to replace its workers after a reload")
    return time.monotonic() - start


def reload(server: Server) -> None:
    """``nginx -s reload`` for this server, by hand (not through canary's adapter)."""
    subprocess.run(nginx_argv(server, "-s", "reload"), check=True, capture_output=True)
