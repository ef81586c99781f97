"""A local stand-in for Slack (incoming webhooks and a bot's ``chat.postMessage``), so
alerts can be seen and tested offline.

It accepts POSTs on any path (a Slack webhook path is ``/services/T.../B.../...``), keeps
every request in memory, optionally appends accepted payloads to a JSONL file, prints one
readable line per message, and answers ``ok`` as Slack does. Tests script its answers
(``429`` with ``Retry-After`` for the first N requests, ``500``, a reply that hangs) to
drive a notifier's retry rules over real HTTP. Like Slack, it refuses a body that is not
JSON (400 ``invalid_payload``) and one with neither text nor blocks (400 ``no_text``).

``POST /api/chat.postMessage`` answers like the Web API: HTTP 200 with JSON,
``{"ok": true, "channel": ..., "ts": ...}`` with a ``ts`` that grows with every message,
or ``{"ok": false, "error": ...}`` (``not_authed``/``invalid_auth`` when ``token`` is set
and the bearer token is missing or another, ``channel_not_found``, ``no_text``).

    python -m lab.slack_receiver --port 8099 --out alerts.jsonl --token xoxb-lab
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, TextIO


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``delay`` holds the reply back (to make a client time out)."""

    status: int = 200
    body: str = "ok"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and what it was answered."""

    at: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any  # parsed JSON, or None
    status: int
    ok: bool = True  # False when the Web API answered ``ok: false`` inside a 200
    ts: str = ""  # the ts a posted chat.postMessage was given


def describe(payload: Any) -> str:
    """``header | text``: one line that says what the message was about."""
    if not isinstance(payload, dict):
        return repr(payload)
    header = ""
    for block in payload.get("blocks") or ():
        if isinstance(block, dict) and block.get("type") == "header":
            header = str((block.get("text") or {}).get("text", ""))
            break
    text = str(payload.get("text", ""))
    return " | ".join(part for part in (header, text) if part) or "(empty message)"


@dataclass
class SlackReceiver:
    """The server: ``start()``, post to ``url``, read ``payloads``/``requests``, ``stop()``."""

    host: str = "127.0.0.1"
    port: int = 0
    out: str | None = None
    echo: TextIO | None = field(default_factory=lambda: sys.stdout)
    token: str | None = field(default=None, repr=False)  # bearer chat.postMessage needs

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ts_base = int(time.time())
        self._ts_count = 0
        self._script: deque[Reply] = deque()
        self._requests: list[Received] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> SlackReceiver:
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        # a short poll interval: shutdown() waits for it, and tests stop a receiver each
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name=f"slack-receiver:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases replies that are being held back
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "/services/T000/B000/XXXX") -> str:
        return f"http://{self.host}:{self.port}{path}"

    # -- scripting and reading ----------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order; then ``ok`` again."""
        with self._lock:
            self._script.extend(replies)

    def fail_next(self, n: int, *, status: int = 429, retry_after: float | None = None,
                  body: str | None = None, delay: float = 0.0) -> None:
        headers = (("Retry-After", f"{retry_after:g}"),) if retry_after is not None else ()
        default = "rate_limited" if status == 429 else f"error {status}"
        self.script(*[Reply(status, body if body is not None else default, headers, delay)] * n)

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    @property
    def payloads(self) -> list[Any]:
        """Accepted messages only (answered 2xx and ok), as Slack would have posted them."""
        return [r.payload for r in self.requests if 200 <= r.status < 300 and r.ok]

    def api_error(self, error: str, *, retry_after: float | None = None) -> None:
        """Answer the next chat.postMessage with ``{"ok": false, "error": error}``."""
        headers = (("Retry-After", f"{retry_after:g}"),) if retry_after is not None else ()
        self.script(Reply(200, json.dumps({"ok": False, "error": error}),
                          (("Content-Type", "application/json"), *headers)))

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()

    # -- called by the handler ----------------------------------------------------------

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        payload: Any = None
        if path.endswith("/chat.postMessage"):
            return self._post_message(path, headers, body, scripted)
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            reply = scripted or Reply(400, "invalid_payload")
        else:
            has_text = isinstance(payload, dict) and (payload.get("text") or payload.get("blocks"))
            empty = not has_text
            slack_path = path.startswith("/services/")
            reply = scripted or (Reply(400, "no_text") if empty and slack_path else Reply())
        with self._lock:
            self._requests.append(Received(time.monotonic(), path, headers, body, payload,
                                           reply.status))
        if 200 <= reply.status < 300:
            self._record(payload)
        if reply.delay:
            self._stopping.wait(reply.delay)
        return reply

    def _post_message(self, path: str, headers: dict[str, str], body: bytes,
                      scripted: Reply | None) -> Reply:
        """The Web API's way: every answer a 200 with JSON saying ``ok`` or why not."""
        try:
            payload: Any = json.loads(body or b"null")
        except ValueError:
            payload = None
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        error = ""
        if self.token is not None and not auth:
            error = "not_authed"
        elif self.token is not None and auth != f"Bearer {self.token}":
            error = "invalid_auth"
        elif not isinstance(payload, dict):
            error = "invalid_json"
        elif not payload.get("channel"):
            error = "channel_not_found"
        elif not (payload.get("text") or payload.get("blocks")):
            error = "no_text"
        ts = ""
        if scripted is not None:
            reply = scripted
            try:
                ok = bool(json.loads(reply.body).get("ok"))
            except (ValueError, AttributeError):
                ok = False
        elif error:
            reply, ok = Reply(200, json.dumps({"ok": False, "error": error}),
                              (("Content-Type", "application/json"),)), False
        else:
            with self._lock:
                self._ts_count += 1
                ts = f"{self._ts_base}.{self._ts_count:06d}"
            answer = {"ok": True, "channel": payload["channel"], "ts": ts, "message": payload}
            reply, ok = Reply(200, json.dumps(answer),
                              (("Content-Type", "application/json"),)), True
        with self._lock:
            self._requests.append(Received(time.monotonic(), path, headers, body, payload,
                                           reply.status, ok=ok, ts=ts))
        if ok and 200 <= reply.status < 300:
            self._record(payload)
        if reply.delay:
            self._stopping.wait(reply.delay)
        return reply

    def _record(self, payload: Any) -> None:
        if self.out:
            with self._lock, open(self.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(payload, ensure_ascii=False) + "\n")
        if self.echo is not None:
            threaded = isinstance(payload, dict) and payload.get("thread_ts")
            print(f"[slack]{'   ↳' if threaded else ''} {describe(payload)}", file=self.echo,
                  flush=True)


def _handler_for(receiver: SlackReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = receiver._answer(self.path, dict(self.headers.items()), body)
            data = reply.body.encode()
            try:
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                if not any(name.lower() == "content-type" for name, _ in reply.headers):
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timed out) while the reply was held back

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per message is printed by the receiver instead

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--out", help="append accepted payloads to this JSONL file")
    parser.add_argument("--fail-first", type=int, default=0, metavar="N",
                        help="answer the first N requests with --fail-status")
    parser.add_argument("--fail-status", type=int, default=429)
    parser.add_argument("--retry-after", type=float, default=None,
                        help="Retry-After seconds sent with the scripted failures")
    parser.add_argument("--token", default=None,
                        help="bearer token chat.postMessage requires (default: any)")
    args = parser.parse_args(argv)

    receiver = SlackReceiver(host=args.host, port=args.port, out=args.out, token=args.token)
    receiver.fail_next(args.fail_first, status=args.fail_status, retry_after=args.retry_after)
    receiver.start()
    print(f"slack receiver listening on {receiver.url('/')}", flush=True)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    done.wait()
    receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
