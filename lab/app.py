"""A tiny demo service that exports the conventional series canary's built-in metrics read.

Tests and examples need a real version of a service that fails on demand: this one answers
``/`` (any path but ``/metrics`` and ``/healthz``) with 200 or 500 at a fixed error rate,
after a fixed delay, and exports ``http_requests_total{service,version,code}`` and
``http_request_duration_seconds_bucket{service,version,le}`` on ``/metrics``.

Errors are spread evenly rather than drawn at random (with ``--error-rate 0.4`` exactly
two requests in five fail), so a test can assert a measured error rate tightly. The 200
and 500 children are created at start, so "no 5xx yet" reads as 0, not as a missing
series. The body and the ``X-Version`` header name the version that answered, so load
sent through a router can be counted per version.

    python -m lab.app --port 8081 --version 2.0.0 --error-rate 0.4 --latency 0.01
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from lab.proc import Server, free_port, port_open, wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]


class ErrorSchedule:
    """Decides which requests fail: the n-th fails when floor(n*rate) steps up.

    With ``after``, the first ``after`` requests never fail: a version that breaks only
    once real load reaches it (a leak, a pool that runs dry), which a preview with a
    handful of requests cannot see.
    """

    def __init__(self, rate: float, *, after: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"error rate must be within 0..1, got {rate}")
        self._rate = rate
        self._after = after
        self._count = 0
        self._lock = threading.Lock()

    def next_fails(self) -> bool:
        with self._lock:
            self._count += 1
            n = self._count - self._after
            return n > 0 and int(n * self._rate) > int((n - 1) * self._rate)


def make_server(
    port: int,
    *,
    version: str,
    service: str = "checkout",
    error_rate: float = 0.0,
    latency: float = 0.0,
    host: str = "127.0.0.1",
    fail_after: int = 0,
) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for one version of the demo service."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the lab app binds loopback addresses only, got {host}")
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests_total", "Requests answered, by status code.",
        ["service", "version", "code"], registry=registry,
    )
    duration = Histogram(
        "http_request_duration_seconds", "Time to answer a request.",
        ["service", "version"], registry=registry,
    )
    for code in ("200", "500"):
        requests.labels(service, version, code)
    timer = duration.labels(service, version)
    schedule = ErrorSchedule(error_rate, after=fail_after)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a proxy in front would use
        # Headers and body go out in two writes; with Nagle on, the client's delayed ACK
        # stalls every keep-alive request by about 40 ms.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            else:
                start = time.perf_counter()
                if latency > 0:
                    time.sleep(latency)
                code = 500 if schedule.next_fails() else 200
                body = f"{service} {version} {code}\n".encode()
                self._reply(code, body, "text/plain")
                requests.labels(service, version, str(code)).inc()
                timer.observe(time.perf_counter() - start)

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Version", version)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # one line per request would drown the test logs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def start_app(
    workdir: str | Path,
    *,
    version: str,
    service: str = "checkout",
    error_rate: float = 0.0,
    latency: float = 0.0,
    port: int | None = None,
    fail_after: int = 0,
) -> Server:
    """Run the app as its own process on a free loopback port; ``info['url']`` is its URL."""
    port = port or free_port()
    argv = [
        sys.executable, "-m", "lab.app", "--port", str(port), "--version", version,
        "--service", service, "--error-rate", str(error_rate), "--latency", str(latency),
        "--fail-after", str(fail_after),
    ]
    log = Path(workdir) / f"app-{port}.log"
    server = Server(name=f"app {service} {version}", argv=argv, log_path=str(log))
    server.start(cwd=str(REPO_ROOT))
    server.info.update(url=f"http://127.0.0.1:{port}", port=port, version=version)
    try:
        wait_until(lambda: not server.alive() or port_open(port), timeout=10,
                   what=f"{server.name} on port {port}")
        if not server.alive():
            raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
    except BaseException:
        server.stop()
        raise
    return server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--version", required=True)
    parser.add_argument("--service", default="checkout")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answered 500")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--fail-after", type=int, default=0,
                        help="answer this many requests without errors first")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.port, version=args.version, service=args.service,
                             error_rate=args.error_rate, latency=args.latency, host=args.host,
                         fail_after=args.fail_after)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"{args.service} {args.version} listening on http://{args.host}:{args.port}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
