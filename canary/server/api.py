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
This module puts the app together (tokens, error handlers); the routes are in
canary/server/api_rollouts.py (rollouts), api_commands.py (operator commands) and
api_web.py (health, metrics, the status page).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from canary.errors import CanaryError, ConflictError, InputError, NotFoundError, TemporaryError
from canary.server.api_commands import add_command_routes
from canary.server.api_rollouts import add_rollout_routes
from canary.server.api_web import add_web_routes
from canary.server.apikit import ApiError, Driver, error
from canary.server.bodies import EnvPolicy
from canary.server.exporter import ServeMetrics
from canary.store.base import StateStore

log = logging.getLogger("canary.server.api")

READ, OPERATOR = "read", "operator"


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


def build_app(*, store: StateStore, controller: Driver, metrics: ServeMetrics,
              tokens: Tokens, env: EnvPolicy | None = None) -> FastAPI:
    app = FastAPI(title="canary serve API", version="1", openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Submit rollouts to a running `canary serve`, read their status "
                  "and event journals, record operator commands. Bearer tokens: read scope "
                  "(CANARY_API_TOKENS_READ) for GET, operator scope "
                  "(CANARY_API_TOKENS_OPERATOR) for POST. 401 without a valid token, 403 for "
                  "a read token on a write.")

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
    async def apierror(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="canary"'} if exc.status == 401 else {}
        return error(exc.status, str(exc), **headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return error(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(HTTPException)
    async def httperror(request: Request, exc: HTTPException) -> JSONResponse:
        message = {404: f"no route for {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}
        return error(exc.status_code, message.get(exc.status_code, str(exc.detail)),
                      **(exc.headers or {}))

    @app.exception_handler(CanaryError)
    async def canaryerror(request: Request, exc: CanaryError) -> JSONResponse:
        if isinstance(exc, InputError):
            return JSONResponse({"error": str(exc), "message": exc.message, "file": exc.file,
                                 "line": exc.line, "field": exc.field}, status_code=400)
        if isinstance(exc, NotFoundError):
            return error(404, str(exc))
        if isinstance(exc, ConflictError):
            return error(409, str(exc))
        if isinstance(exc, TemporaryError):
            return error(503, str(exc), **{"Retry-After": str(int(exc.retry_after))})
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error(500, str(exc))

    add_rollout_routes(app, store=store, controller=controller, env=env or EnvPolicy(),
                       reader=reader, operator=operator)
    add_command_routes(app, store=store, controller=controller, operator=operator)
    add_web_routes(app, store=store, metrics=metrics)
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputError(f"expected HOST:PORT, got {listen!r}", field="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)
