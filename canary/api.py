"""The HTTP API of `canary serve`: submit rollouts, read them, record operator commands.

The standard library's ThreadingHTTPServer and a route table: eight JSON routes do not
justify a web framework's dependency tree. Every rollout route needs a bearer token
(CANARY_API_TOKENS_READ / CANARY_API_TOKENS_OPERATOR, comma-separated): read scope for GET,
operator scope for writes. An operator token is powerful: a rollout file names migration
commands and routers the controller runs, so hand them out like shell access. Tokens are
compared in constant time and never logged; the request log holds method, path and status.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from canary.errors import CanaryError, ConflictError, InputError, NotFoundError, TemporaryError
from canary.exporter import ServeMetrics
from canary.model import Command
from canary.operations import record_command
from canary.rollout.state import RolloutState
from canary.store.base import StateStore
from canary.views import event_json, status_json

log = logging.getLogger("canary.api")

MAX_BODY = 1 << 20
READ, OPERATOR = "read", "operator"
COMMANDS = ("pause", "resume", "abort", "promote", "retry")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
          "html": "text/html; charset=utf-8", "json": "application/json"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class Driver(Protocol):
    """What the API asks of the controller."""

    def adopt(self, state: RolloutState) -> None: ...

    def poke(self, name: str) -> None: ...


@dataclass(frozen=True)
class Tokens:
    read: tuple[str, ...] = field(default=(), repr=False)
    operator: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tokens:
        def split(name: str) -> tuple[str, ...]:
            return tuple(t.strip() for t in env.get(name, "").split(",") if t.strip())

        return cls(read=split("CANARY_API_TOKENS_READ"),
                   operator=split("CANARY_API_TOKENS_OPERATOR"))

    @property
    def configured(self) -> bool:
        return bool(self.read or self.operator)

    def scope(self, presented: str) -> str | None:
        """The scope of ``presented``: every token is compared, in constant time each."""
        found = None
        for scope, tokens in ((READ, self.read), (OPERATOR, self.operator)):
            for token in tokens:
                if hmac.compare_digest(presented.encode(), token.encode()):
                    found = scope
        return found


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def _json(status: int, data: Any, **headers: str) -> Response:
    return Response(status, json.dumps(data).encode(), headers=dict(headers))


Handler = Callable[[dict[str, str], dict[str, list[str]], bytes, str], Response]


class Api:
    def __init__(self, *, store: StateStore, controller: Driver, metrics: ServeMetrics,
                 tokens: Tokens) -> None:
        self.store, self.controller, self.metrics, self.tokens = store, controller, metrics, tokens
        name = r"(?P<name>[^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], str | None, Handler]] = [
            ("GET", re.compile(r"/api/v1/rollouts"), READ, self._list),
            ("POST", re.compile(r"/api/v1/rollouts"), OPERATOR, self._submit),
            ("GET", re.compile(rf"/api/v1/rollouts/{name}"), READ, self._get),
            ("GET", re.compile(rf"/api/v1/rollouts/{name}/events"), READ, self._events),
            ("POST", re.compile(rf"/api/v1/rollouts/{name}/(?P<command>{'|'.join(COMMANDS)})"),
             OPERATOR, self._command),
            ("GET", re.compile(r"/api/v1/openapi\.json"), None,
             lambda *_: _resource("openapi.json")),
            ("GET", re.compile(r"/metrics"), None, self._metrics),
            ("GET", re.compile(r"/healthz"), None, lambda *_: _json(200, {"ok": True})),
            ("GET", re.compile(r"/(?P<file>index\.html)?"), None, self._static),
            ("GET", re.compile(r"/static/(?P<file>[a-z]+\.(?:js|css))"), None, self._static),
        ]

    def handle(self, method: str, path: str, query: dict[str, list[str]], *,
               authorization: str, body: bytes, content_type: str) -> Response:
        try:
            for verb, pattern, scope, handler in self.routes:
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                if verb != method:
                    if any(v == method and p.fullmatch(path) for v, p, _, _ in self.routes):
                        continue
                    raise ApiError(405, f"{method} is not allowed on {path}")
                if scope is not None:
                    self._authorize(authorization, scope)
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                return handler(args, query, body, content_type)
            raise ApiError(404, f"no route for {path}")
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="canary"'} if exc.status == 401 else {}
            return _json(exc.status, {"error": str(exc), **exc.extra}, **headers)
        except InputError as exc:
            return _json(400, {"error": str(exc), "message": exc.message, "file": exc.file,
                               "line": exc.line, "field": exc.field})
        except NotFoundError as exc:
            return _json(404, {"error": str(exc)})
        except ConflictError as exc:
            return _json(409, {"error": str(exc)})
        except TemporaryError as exc:
            return _json(503, {"error": str(exc)}, **{"Retry-After": str(int(exc.retry_after))})
        except CanaryError as exc:
            return _json(500, {"error": str(exc)})

    def _authorize(self, authorization: str, needed: str) -> None:
        if not self.tokens.configured:
            raise ApiError(401, "no API tokens are configured on this controller (set "
                                "CANARY_API_TOKENS_READ / CANARY_API_TOKENS_OPERATOR)")
        kind, _, token = authorization.partition(" ")
        scope = self.tokens.scope(token.strip()) if kind.lower() == "bearer" else None
        if scope is None:
            raise ApiError(401, "missing or invalid bearer token")
        if needed == OPERATOR and scope != OPERATOR:
            raise ApiError(403, "this token may only read: operator scope needed")

    # -- rollouts -------------------------------------------------------------------------

    def _list(self, args: dict[str, str], query: dict[str, list[str]], body: bytes,
              ctype: str) -> Response:
        limit = _int(query, "limit", 50)
        states = self.store.list_active()
        if _flag(query, "active") is not True:
            states += self.store.history(limit=limit)
        latest: dict[str, RolloutState] = {}
        for s in states:  # the newest rollout of each name; active ones first
            if s.name not in latest or latest[s.name].created_at < s.created_at:
                latest[s.name] = s
        ordered = sorted(latest.values(), key=lambda s: (s.phase.terminal, s.name))
        return _json(200, {"rollouts": [_summary(s) for s in ordered]})

    def _submit(self, args: dict[str, str], query: dict[str, list[str]], body: bytes,
                ctype: str) -> Response:
        from canary.deploy import submit
        from canary.routers.registry import build_router

        text, version, file = _document(body, ctype, query)
        spec, policy, state, resumed = submit(text, file=file, version=version,
                                              store=self.store, now=datetime.now(UTC))
        # Count the events that existed at submission before the controller adopts it: a
        # tick right after adoption must not hide the first steps from the follower.
        events = self.store.events(state.id)
        self.controller.adopt(state)
        log.info("rollout %s %s (%s -> %s)", spec.name, "resumed" if resumed else "submitted",
                 state.stable_version or "?", state.version)
        return _json(200 if resumed else 201, {
            "resumed": resumed, "router": build_router(spec.router).describe(),
            "stages": [s.weight for s in spec.stages], "policy": policy.name,
            "eventCount": len(events), "rollout": status_json(state, events[-20:])})

    def _get(self, args: dict[str, str], query: dict[str, list[str]], body: bytes,
             ctype: str) -> Response:
        state = self.store.get(args["name"])
        n = _int(query, "events", 20)
        return _json(200, status_json(state, self.store.events(state.id, limit=n) if n else []))

    def _events(self, args: dict[str, str], query: dict[str, list[str]], body: bytes,
                ctype: str) -> Response:
        state = self.store.get(args["name"])
        events = self.store.events(state.id)
        after = max(0, _int(query, "after", 0))
        return _json(200, {"id": state.id, "next": len(events),
                           "events": [event_json(e) for e in events[after:]]})

    def _command(self, args: dict[str, str], query: dict[str, list[str]], body: bytes,
                 ctype: str) -> Response:
        name, word = args["name"], args["command"]
        full = _flag(query, "full") or (_body_json(body).get("full") is True if body else False)
        command = Command.PROMOTE_FULL if word == "promote" and full else Command(word)
        state = record_command(self.store, name, command)
        if command is Command.RETRY:
            self.controller.adopt(state)
        else:
            self.controller.poke(name)
        log.info("rollout %s: operator %s recorded", name, command.value)
        return _json(202, {"name": name, "command": command.value,
                           "message": f"{command.value} recorded; the controller acts on it",
                           "rollout": _summary(state)})

    # -- the rest -------------------------------------------------------------------------

    def _metrics(self, *_: object) -> Response:
        body, ctype = self.metrics.render()
        return Response(200, body, ctype)

    def _static(self, args: dict[str, str], *_: object) -> Response:
        return _resource(args.get("file") or "index.html")


def _resource(name: str) -> Response:
    """A file of the status page (package data under canary/web/)."""
    data = resources.files("canary").joinpath("web", name).read_bytes()
    return Response(200, data, _TYPES[name.rsplit(".", 1)[-1]])


def _summary(state: RolloutState) -> dict[str, Any]:
    out = status_json(state, [])
    out.pop("events")
    return out


def _document(body: bytes, ctype: str, query: dict[str, list[str]]) -> tuple[str, str | None,
                                                                              str]:
    """The rollout text, version and file name, from JSON or from a raw YAML body."""
    if ctype.split(";")[0].strip() == "application/json":
        data = _body_json(body)
        text, version, file = data.get("document"), data.get("version"), data.get("file")
        if not isinstance(text, str):
            raise ApiError(400, "the JSON body needs 'document': the rollout file's text")
        if version is not None and not isinstance(version, str):
            raise ApiError(400, "'version' must be a string")
        if file is not None and not isinstance(file, str):
            raise ApiError(400, "'file' must be a string")
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the rollout file is not UTF-8 text") from None
        version, file = _one(query, "version"), _one(query, "file")
    return text, version or None, file or "rollout.yaml"


def _body_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the JSON body must be an object")
    return data


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _int(query: dict[str, list[str]], key: str, default: int) -> int:
    raw = _one(query, key)
    try:
        return default if raw is None else int(raw)
    except ValueError:
        raise ApiError(400, f"{key} must be an integer") from None


def _flag(query: dict[str, list[str]], key: str) -> bool | None:
    raw = _one(query, key)
    return None if raw is None else raw.lower() in ("1", "true", "yes")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputError(f"expected HOST:PORT, got {listen!r}", field="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


def make_http_server(api: Api, *, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "canary"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True
                resp = _json(413, {"error": f"the body must be at most {MAX_BODY} bytes"})
            else:
                body = self.rfile.read(length) if length else b""
                try:
                    resp = api.handle(method, parts.path, parse_qs(parts.query),
                                      authorization=self.headers.get("Authorization", ""),
                                      body=body,
                                      content_type=self.headers.get("Content-Type", ""))
                except Exception:  # noqa: BLE001 - answer 500, keep serving
                    log.exception("%s %s failed", method, parts.path)
                    resp = _json(500, {"error": "internal error (see the controller's log)"})
            self.send_response(resp.status)
            for key, value in {**_SECURITY_HEADERS, **resp.headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)
            level = logging.INFO if method != "GET" else logging.DEBUG
            log.log(level, "%s %s %d", method, parts.path, resp.status)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # _dispatch logs method, path and status: never headers (tokens)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         field="--listen") from exc
    server.daemon_threads = True
    return server
