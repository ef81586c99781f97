"""A small HTTP proxy in front of a real Prometheus that misbehaves on demand.

Modes: ``ok`` forwards; ``slow`` forwards after ``delay`` seconds; ``5xx`` answers 503 with
Prometheus's error JSON; ``flap`` alternates ``period`` seconds of ``5xx`` with ``period``
seconds of ``ok`` (starting down). Everything it forwards is a real Prometheus answer.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOWN = b'{"status":"error","errorType":"unavailable","error":"injected fault"}'


@dataclass
class FaultProxy:
    upstream: str
    mode: str = "ok"
    delay: float = 0.0
    period: float = 3.0
    url: str = ""
    served: dict[str, int] = field(default_factory=lambda: {"ok": 0, "5xx": 0})
    _since: float = field(default_factory=time.monotonic)

    def set(self, mode: str, *, delay: float = 0.0, period: float = 3.0) -> None:
        self.mode, self.delay, self.period, self._since = mode, delay, period, time.monotonic()

    def failing_now(self) -> bool:
        if self.mode == "5xx":
            return True
        if self.mode == "flap":
            return int((time.monotonic() - self._since) / self.period) % 2 == 0
        return False


@contextmanager
def running_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream=upstream.rstrip("/"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if proxy.failing_now():
                proxy.served["5xx"] += 1
                self._reply(503, DOWN)
                return
            if proxy.mode == "slow":
                time.sleep(proxy.delay)
            try:
                with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as r:
                    code, body = r.status, r.read()
            except urllib.error.HTTPError as exc:
                code, body = exc.code, exc.read()
            proxy.served["ok"] += 1
            self._reply(code, body)

        def _reply(self, code: int, body: bytes) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up waiting (slow mode): that is the point

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
