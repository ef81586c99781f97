"""Tiny named HTTP backends, to count how a router splits traffic.

Each backend answers every GET with its own name (HTTP/1.1, keep-alive), so requests sent
through HAProxy or nginx can be tallied per server and compared with the weights. They
run as threads of the calling process: they stand in for the upstream apps, not for the
router under test, which always runs as a real process.

    python -m lab.backends stable-1=8001 canary-1=8002
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients behind a
    # proxy wait ~40 ms for the delayed ACK on every request.
    disable_nagle_algorithm = True
    server: _NamedServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits += 1
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None  # quiet: thousands of requests per test


class _NamedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.hits = 0  # requests received, answered to a client or not (mirrors)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A proxy that stops or reloads resets its idle keep-alive connections; that is
        # expected here and not worth a traceback on stderr.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class Backend:
    """One running backend: its name, its port, and how to stop it."""

    name: str
    server: _NamedServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def hits(self) -> int:
        """Requests this backend received, including mirrored ones nobody saw answered."""
        return self.server.hits

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_backend(name: str, *, port: int = 0) -> Backend:
    """A backend answering ``name`` on 127.0.0.1:``port`` (0: any free port)."""
    server = _NamedServer(name, port)
    thread = threading.Thread(target=server.serve_forever, name=f"backend-{name}", daemon=True)
    thread.start()
    return Backend(name=name, server=server, thread=thread)


def start_backends(names: Iterable[str]) -> dict[str, Backend]:
    return {name: start_backend(name) for name in names}


def count_responses(url: str, *, requests: int, timeout: float = 5.0) -> Counter[str]:
    """Send ``requests`` GETs to ``url`` on one keep-alive connection; tally the bodies."""
    tally: Counter[str] = Counter()
    with httpx.Client(timeout=timeout) as client:
        for _ in range(requests):
            response = client.get(url)
            response.raise_for_status()
            tally[response.text] += 1
    return tally


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print("usage: python -m lab.backends NAME=PORT ...", file=sys.stderr)
        return 2
    running = [start_backend(n, port=int(p)) for n, p in (a.split("=", 1) for a in argv)]
    for b in running:
        print(f"{b.name} on {b.address}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for b in running:
            b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
