"""A real HAProxy for tests and examples: one frontend, one roundrobin backend, admin API.

The servers start in the state a rollback writes (stable servers carry all
the weight, canary servers 0), so a freshly started or restarted HAProxy sends everything
to stable: the safe state, and the one the controller expects before its first stage.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Collection, Mapping
from pathlib import Path

from canary.model import Weights
from canary.routers.haproxy import weights_for
from lab.proc import Server, free_port, wait_until

HAPROXY = "/usr/sbin/haproxy"


def runtime_command(socket_path: str, command: str, *, timeout: float = 2.0) -> str:
    """One runtime API command, sent without going through canary's adapter."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(socket_path)
        conn.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def render_config(*, backend: str, servers: Mapping[str, int], weights: Mapping[str, int],
                  port: int, socket_path: str, admin_port: int,
                  canary: Collection[str] = (), match_acl: str | None = None,
                  match_header: str = "X-Canary", sticky_cookie: str | None = None) -> str:
    """haproxy.cfg; with ``match_acl`` and ``sticky_cookie`` the lines the HAProxy router's
    matches and affinity need (see canary/routers/haproxy.py)."""
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        f"    stats socket ipv4@127.0.0.1:{admin_port} level admin",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 10s",
        "    timeout server 10s",
        "frontend main",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {backend}",
        f"backend {backend}",
        "    balance roundrobin",
    ]
    if match_acl is not None:
        lines += [f"    acl canary_match req.hdr({match_header}) -m str -f {match_acl}",
                  *(f"    use-server {name} if canary_match" for name in canary)]
    if sticky_cookie is not None:
        lines += [f"    cookie {sticky_cookie} insert indirect nocache maxlife 1h",
                  "    option redispatch"]
    lines += [f"    server {name} 127.0.0.1:{p} weight {weights[name]}"
              + (f" cookie {name}" if sticky_cookie is not None else "")
              for name, p in servers.items()]
    return "\n".join(lines) + "\n"


def start_haproxy(workdir: str | Path, *, backend: str, servers: Mapping[str, int],
                  canary: Collection[str] = (), port: int | None = None,
                  timeout: float = 10.0, match_header: str | None = None,
                  sticky_cookie: str | None = None) -> Server:
    """Start ``haproxy -db`` with ``servers`` (name -> backend port) in ``backend``.

    ``canary`` names the servers that start at weight 0. ``Server.info`` holds ``port``
    (the frontend), ``socket`` (unix admin socket), ``admin_port`` (the same API over
    TCP), ``config``, ``backend`` and, with ``match_header``, ``match_acl`` (the empty ACL
    file that sends requests carrying the header's listed values to the canary).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stable = [n for n in servers if n not in canary]
    weights = weights_for(Weights(canary=0), stable=stable, canary=list(canary))
    port = port or free_port()
    admin_port = free_port()
    socket_path = str(workdir / "admin.sock")
    config = workdir / "haproxy.cfg"
    match_acl = None
    if match_header is not None:
        match_acl = str(workdir / "canary-match.acl")
        Path(match_acl).write_text("")
    config.write_text(render_config(backend=backend, servers=servers, weights=weights,
                                    port=port, socket_path=socket_path, admin_port=admin_port,
                                    canary=canary, match_acl=match_acl,
                                    match_header=match_header or "X-Canary",
                                    sticky_cookie=sticky_cookie))
    check = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True,
                           check=False)
    if check.returncode != 0:
        raise RuntimeError(f"haproxy -c rejected {config}:\n{check.stdout}{check.stderr}")
    if os.path.exists(socket_path):
        os.unlink(socket_path)  # left by an earlier run: would look ready at once
    server = Server(name="haproxy", argv=[HAPROXY, "-db", "-f", str(config)],
                    log_path=str(workdir / "haproxy.log"))
    server.info.update(port=port, socket=socket_path, admin_port=admin_port,
                       config=str(config), backend=backend, match_acl=match_acl)
    server.start()

    def answers() -> bool:
        return "Name: HAProxy" in runtime_command(socket_path, "show info")

    try:  # a process that died is "done" too, so a bad start fails fast
        wait_until(lambda: not server.alive() or answers(), timeout=timeout,
                   what="haproxy runtime API")
    except TimeoutError:
        server.stop()
        raise RuntimeError(f"haproxy did not come up:\n{server.log_tail()}") from None
    if not server.alive():
        raise RuntimeError(f"haproxy exited:\n{server.log_tail()}")
    return server
