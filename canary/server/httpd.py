"""The HTTP server of `canary serve`: uvicorn on its own thread, with limits a hostile
client cannot get around.

Ticks run on the scheduler's threads; this server runs one event loop on one thread, so
connections cost no thread each and a slow client delays no rollout. Limits: a listen
backlog of 2048; requests must arrive whole within ``read_timeout`` (uvicorn only times out
idle keep-alive connections, so a connection that never finishes its headers or its body is
closed here); headers at most 16 KiB; bodies at most 1 MiB; at most ``limit_concurrency``
connections and requests at once (uvicorn answers 503 beyond); handlers that touch the
store run on a bounded thread pool.

Speed: every request costs the one event-loop thread some CPU, and with many clients at
once each waits for the requests queued before it, so that cost is the latency (profiled in
bench/serve/results.md: the tick threads were not the cause). uvicorn's pure-Python h11
parser and asyncio's pure-Python transports were most of it; the server uses httptools (C
parser) and uvloop (C event loop) instead, uvicorn's own "standard" choice.

Every response carries the security headers of the status page; every request is logged
as method, path and status (never headers: they carry tokens), writes at INFO. A client
that hangs up is not an error and leaves no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any

import httptools
import uvicorn
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from canary.errors import InputError

log = logging.getLogger("canary.server.api")

MAX_BODY = 1 << 20
MAX_HEADERS = 16 * 1024
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


class _TimedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request is not complete in
    time, and refusing (400, as uvicorn answers any bad request) a head over MAX_HEADERS."""

    read_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # before a request: its head is coming
        self._received = self._head_bytes = 0  # raw bytes, and parsed ones, of the head
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # httptools keeps an unfinished header line in memory: bound what it may hold
            # (the chunk that ends a head may carry a body too: only earlier ones count).
            if self._received > MAX_HEADERS and not self.transport.is_closing():
                self.send_400_response("Request headers too large.")
                return
            self._received += len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._received, self._head_bytes = True, 0, 0
        self._arm()  # a request started: it has read_timeout to finish

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()  # read whole: the handler may take what it needs

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEADERS:
            # Raised inside the parser's callback: feed_data raises HttpParserError, which
            # uvicorn answers with 400 and a closed connection.
            raise httptools.HttpParserError("request head too large")

    def _arm(self) -> None:
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(self.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _expired(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            self.transport.close()  # the handler, if any, sees a disconnect


class FrontDoor:
    """ASGI middleware: body limit by Content-Length, security headers, one log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path, status = scope["method"], scope["path"], 0
        if path == "/healthz" and method == "GET":
            # Liveness is asked often and by many (probes, load balancers): answered here,
            # before routing, so it stays cheap when the API is busy.
            await _reply(send, 200, b'{"ok": true}', keep=True)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        length = dict(scope["headers"]).get(b"content-length", b"0")
        try:
            if not length.isdigit() or int(length) > MAX_BODY:
                await _reply(send_with_headers, 413, b'{"error": "the body must be at most '
                             + str(MAX_BODY).encode() + b' bytes"}')
            else:
                await self.app(scope, receive, send_with_headers)
        except (ClientDisconnect, ConnectionError):
            status = status or 499  # the client hung up: nothing to answer, nothing to log
        except Exception:  # noqa: BLE001 - answer 500 (if not done), keep serving
            log.exception("%s %s failed", method, path)
            if not status:
                with contextlib.suppress(Exception):
                    await _reply(send_with_headers, 500,
                                 b'{"error": "internal error (see the controller\'s log)"}')
        level = logging.DEBUG if method == "GET" and status < 500 else logging.INFO
        log.log(level, "%s %s %d", method, path, status,
                extra={"event": "http", "ms": round((time.perf_counter() - started) * 1e3, 1)})


_SECURITY = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


async def _reply(send: Send, status: int, body: bytes, *, keep: bool = False) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *_SECURITY]
    await send({"type": "http.response.start", "status": status,
                "headers": headers if keep else [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def bind(host: str, port: int, *, backlog: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family = infos[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
        sock.listen(backlog)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         field="--listen") from exc
    return sock


class HttpServer:
    """``app`` served on ``host:port`` from a thread of its own; ``stop()`` ends it."""

    def __init__(self, app: ASGIApp, *, host: str, port: int, read_timeout: float = 10.0,
                 keep_alive: int = 5, limit_concurrency: int = 1024,
                 backlog: int = 2048) -> None:
        self.sock = bind(host, port, backlog=backlog)
        protocol = type("TimedHttpTools", (_TimedHttpTools,), {"read_timeout": read_timeout})
        config = uvicorn.Config(FrontDoor(app), http=protocol, lifespan="off",
                                log_config=None, access_log=False, server_header=False,
                                timeout_keep_alive=keep_alive,
                                limit_concurrency=limit_concurrency, backlog=backlog,
                                timeout_graceful_shutdown=5, loop="uvloop")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    @property
    def port(self) -> int:
        address: Any = self.sock.getsockname()
        return int(address[1])

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self._thread.is_alive() and \
                time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self.sock.close()
