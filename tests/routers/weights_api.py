"""A small HTTP service holding a traffic split, the far side of the http router in tests.

``GET /weights`` returns ``{"stable": N, "canary": N}``; ``PUT /weights`` replaces it.
With ``token`` set, requests without ``Authorization: Bearer <token>`` get 401 and a body
that echoes what was sent (to prove the router masks it). ``fail`` makes every request
answer 500; ``body`` overrides what GET returns.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WeightsApi:
    def __init__(self) -> None:
        self.split: dict[str, Any] = {"stable": 100, "canary": 0}
        self.token: str | None = None
        self.fail = False
        self.body: bytes | None = None
        self.authorizations: list[str | None] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/weights"

    def start(self) -> WeightsApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _refused(self) -> bool:
                got = self.headers.get("Authorization")
                api.authorizations.append(got)
                if api.fail:
                    self._answer(500, b"router backend exploded")
                    return True
                if api.token is not None and got != f"Bearer {api.token}":
                    self._answer(401, f"bad credentials: {got}".encode())
                    return True
                return False

            def do_GET(self) -> None:
                if not self._refused():
                    self._answer(200, api.body or json.dumps(api.split).encode())

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not self._refused():
                    api.split = json.loads(body)
                    self._answer(200, body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler
