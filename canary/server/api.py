"""The HTTP API of `canary serve`: submit rollouts, read them, record operator commands.

FastAPI routes on uvicorn (canary/server/httpd.py runs it). The JSON bodies are the pydantic
models of canary/server/models.py, and /api/v1/openapi.json is generated from them. Every
rollout route needs a bearer token (CANARY_API_TOKENS_READ / CANARY_API_TOKENS_OPERATOR,
comma-separated): read scope for GET, operator scope for writes. An operator token is
powerful: a rollout file names migration commands and routers the controller runs, so hand
them out like shell access. Tokens are compared in constant time and never logged; the
request log holds method, path and status.

Every bad request is a 4xx with a JSON ``{"error": ...}``: unparseable or out-of-range
query parameters and bodies are 400, unknown paths and files 404, oversized bodies 413.
Handlers that touch the store are plain ``def``: they run on the server's bounded thread
pool, never on the event loop and never on the scheduler's tick threads.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from canary.console.logs import fields
from canary.console.views import event_json, status_json
from canary.errors import CanaryError, ConflictError, InputError, NotFoundError, TemporaryError
from canary.model import Command
from canary.rollout.commands import record_command
from canary.server import models as m
from canary.server.bodies import EnvPolicy, check_document
from canary.server.exporter import ServeMetrics
from canary.state import RolloutState
from canary.store.base import StateStore

log = logging.getLogger("canary.server.api")

MAX_BODY = 1 << 20
MAX_LIST = 10_000
READ, OPERATOR = "read", "operator"
COMMANDS = ("pause", "resume", "abort", "promote", "retry")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
          "html": "text/html; charset=utf-8"}
_STATIC = frozenset(f.name for f in resources.files("canary.server").joinpath("web").iterdir()
                    if f.name.rsplit(".", 1)[-1] in _TYPES)


class Driver(Protocol):
    """What the API asks of the controller."""

    def adopt(self, state: RolloutState) -> None: ...

    def poke(self, name: str) -> None: ...


class Ready(Protocol):
    def last_stable_version(self, service: str) -> str | None: ...


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


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": m.Error} for c in codes}


async def read_body(request: Request) -> bytes:
    """The body, at most MAX_BODY bytes whatever Content-Length claims."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, f"the body must be at most {MAX_BODY} bytes")
    return bytes(body)


def build_app(*, store: StateStore, controller: Driver, metrics: ServeMetrics,
              tokens: Tokens, env: EnvPolicy | None = None) -> FastAPI:
    app = FastAPI(title="canary serve API", version="1", openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Submit rollouts to a running `canary serve`, read their status "
                  "and event journals, record operator commands. Bearer tokens: read scope "
                  "(CANARY_API_TOKENS_READ) for GET, operator scope "
                  "(CANARY_API_TOKENS_OPERATOR) for POST. 401 without a valid token, 403 for "
                  "a read token on a write.")
    env_policy = env or EnvPolicy()

    def authorize(request: Request, needed: str) -> None:
        if not tokens.configured:
            raise ApiError(401, "no API tokens are configured on this controller (set "
                                "CANARY_API_TOKENS_READ / CANARY_API_TOKENS_OPERATOR)")
        kind, _, token = request.headers.get("authorization", "").partition(" ")
        scope = tokens.scope(token.strip()) if kind.lower() == "bearer" else None
        if scope is None:
            raise ApiError(401, "missing or invalid bearer token")
        if needed == OPERATOR and scope != OPERATOR:
            raise ApiError(403, "this token may only read: operator scope needed")

    def need_read(request: Request) -> None:
        authorize(request, READ)

    def need_operator(request: Request) -> None:
        authorize(request, OPERATOR)

    reader = [Depends(need_read)]
    operator = [Depends(need_operator)]

    # -- errors: always JSON, always 4xx for what the client got wrong ---------------------

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="canary"'} if exc.status == 401 else {}
        return _error(exc.status, str(exc), **headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return _error(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = {404: f"no route for {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}
        return _error(exc.status_code, message.get(exc.status_code, str(exc.detail)),
                      **(exc.headers or {}))

    @app.exception_handler(CanaryError)
    async def canary_error(request: Request, exc: CanaryError) -> JSONResponse:
        if isinstance(exc, InputError):
            return JSONResponse({"error": str(exc), "message": exc.message, "file": exc.file,
                                 "line": exc.line, "field": exc.field}, status_code=400)
        if isinstance(exc, NotFoundError):
            return _error(404, str(exc))
        if isinstance(exc, ConflictError):
            return _error(409, str(exc))
        if isinstance(exc, TemporaryError):
            return _error(503, str(exc), **{"Retry-After": str(int(exc.retry_after))})
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return _error(500, str(exc))

    # -- rollouts -------------------------------------------------------------------------

    @app.get("/api/v1/rollouts", dependencies=reader, response_model=m.RolloutList,
             responses=_errors(400, 401, 403),
             summary="The newest rollout of each name: active ones first, then recent ones.")
    def list_rollouts(active: Annotated[bool, Query(description="only active rollouts")] = False,
                      limit: Annotated[int, Query(ge=0, le=MAX_LIST, description="how many "
                                                  "past rollouts to include")] = 50,
                      ) -> m.RolloutList:
        states = store.list_active()
        if not active:
            states += store.history(limit=limit)
        latest: dict[str, RolloutState] = {}
        for s in states:  # the newest rollout of each name; active ones first
            if s.name not in latest or latest[s.name].created_at < s.created_at:
                latest[s.name] = s
        ordered = sorted(latest.values(), key=lambda s: (s.phase.terminal, s.name))
        return m.RolloutList(rollouts=[_summary(s) for s in ordered])

    @app.post("/api/v1/rollouts", dependencies=operator, status_code=201,
              response_model=m.Submitted,
              responses={200: {"model": m.Submitted, "description": "resumed"},
                         400: {"model": m.InputErrorOut, "description": "invalid rollout: the "
                               "message `canary deploy` prints (file, line, field)"},
                         **_errors(401, 403, 409, 413)},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": m.SubmitBody.model_json_schema()},
                  "application/yaml": {"schema": {"type": "string"}}}}},
              summary="Submit a rollout file: creates the rollout, or resumes the active one "
                      "of that name.")
    async def submit(request: Request, response: Response) -> m.Submitted:
        body = await read_body(request)
        return await run_in_threadpool(_submit, request, response, body)

    def _submit(request: Request, response: Response, body: bytes) -> m.Submitted:
        from canary.rollout.wiring import submit as submit_document
        from canary.routers.registry import build_router

        text, version, file = _document(body, request)
        check_document(text, file=file, env=env_policy)
        spec, policy, state, resumed = submit_document(text, file=file, version=version,
                                                       store=store, now=datetime.now(UTC))
        # Count the events that existed at submission before the controller adopts it: a
        # tick right after adoption must not hide the first steps from the follower.
        events = store.events(state.id)
        controller.adopt(state)
        log.info("rollout %s %s (%s -> %s)", spec.name, "resumed" if resumed else "submitted",
                 state.stable_version or "?", state.version,
                 extra=fields(rollout=spec.name, event="submitted"))
        response.status_code = 200 if resumed else 201
        return m.Submitted(resumed=resumed, router=build_router(spec.router).describe(),
                           stages=[s.weight for s in spec.stages], policy=policy.name,
                           eventCount=len(events),
                           rollout=m.Status.model_validate(status_json(state, events[-20:])))

    @app.get("/api/v1/rollouts/{name}", dependencies=reader, response_model=m.Status,
             responses=_errors(400, 401, 403, 404), summary="One rollout's status.")
    def get_rollout(name: str, events: Annotated[int, Query(
            ge=0, le=MAX_LIST, description="recent events included")] = 20) -> m.Status:
        state = store.get(name)
        recent = store.events(state.id, limit=events) if events else []
        return m.Status.model_validate(status_json(state, recent))

    @app.get("/api/v1/rollouts/{name}/events", dependencies=reader, response_model=m.Events,
             responses=_errors(400, 401, 403, 404),
             summary="The rollout's event journal, from ?after= on.")
    def get_events(name: str, after: Annotated[int, Query(ge=0, le=10**9)] = 0) -> m.Events:
        state = store.get(name)
        events = store.events(state.id)
        return m.Events(id=state.id, next=len(events),
                        events=[m.EventOut.model_validate(event_json(e))
                                for e in events[after:]])

    def command_route(word: str) -> None:
        async def command(request: Request, name: str,
                          full: Annotated[bool, Query(description="promote: to 100% at once")]
                          = False) -> JSONResponse:
            body = await read_body(request)
            if body:
                full = full or _body_json(body).get("full") is True
            out = await run_in_threadpool(_command, name, word, full)
            return JSONResponse(out.model_dump(mode="json"), status_code=202)

        app.post(f"/api/v1/rollouts/{{name}}/{word}", dependencies=operator, status_code=202,
                 response_model=m.CommandAccepted, responses=_errors(400, 401, 403, 404, 409),
                 summary=f"Record the operator command '{word}'; the controller acts on it.",
                 name=f"command_{word}")(command)

    def _command(name: str, word: str, full: bool) -> m.CommandAccepted:
        command = Command.PROMOTE_FULL if word == "promote" and full else Command(word)
        state = record_command(store, name, command)
        if command is Command.RETRY:
            controller.adopt(state)
        else:
            controller.poke(name)
        log.info("rollout %s: operator %s recorded", name, command.value,
                 extra=fields(rollout=name, event=f"command-{command.value}"))
        return m.CommandAccepted(name=name, command=command.value,
                                 message=f"{command.value} recorded; the controller acts on it",
                                 rollout=_summary(state))

    for word in COMMANDS:
        command_route(word)

    # -- health, metrics, the status page -------------------------------------------------

    @app.get("/healthz", response_model=m.Health, summary="The process answers.")
    async def healthz() -> m.Health:
        return m.Health(ok=True)

    @app.get("/readyz", response_model=m.Health, responses={503: {"model": m.Health}},
             summary="The store answers a real query: 503 when it does not.")
    def readyz() -> JSONResponse:
        try:
            store.last_stable_version("canary-readyz-probe")
        except CanaryError as exc:
            return JSONResponse({"ok": False, "error": f"store: {exc}"}, status_code=503)
        return JSONResponse({"ok": True, "error": None})

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/", include_in_schema=False)
    @app.get("/index.html", include_in_schema=False)
    async def index() -> Response:
        return _resource("index.html")

    @app.get("/static/{file}", include_in_schema=False)
    async def static(file: str) -> Response:
        if file not in _STATIC or file.endswith(".html"):
            raise ApiError(404, f"no file {file}")
        return _resource(file)

    return app


def _resource(name: str) -> Response:
    """A file of the status page (package data under canary/server/web/)."""
    data = resources.files("canary.server").joinpath("web", name).read_bytes()
    return Response(data, media_type=_TYPES[name.rsplit(".", 1)[-1]])


def _summary(state: RolloutState) -> m.Summary:
    out = status_json(state, [])
    out.pop("events")
    return m.Summary.model_validate(out)


def _document(body: bytes, request: Request) -> tuple[str, str | None, str]:
    """The rollout text, version and file name, from JSON or from a raw YAML body."""
    ctype = request.headers.get("content-type", "")
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
        version, file = request.query_params.get("version"), request.query_params.get("file")
    return text, version or None, file or "rollout.yaml"


def _body_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the JSON body must be an object")
    return data


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputError(f"expected HOST:PORT, got {listen!r}", field="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)
