"""What the API's route modules share: the error every 4xx is raised as, the body reader
with its size limit, the JSON body parser, and the controller as the routes see it.

canary/server/api.py puts the app together (tokens, error handlers); the routes live in
canary/server/api_rollouts.py, api_commands.py and api_web.py.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse

from canary.console.views import status_json
from canary.server import models as m
from canary.state import RolloutState

MAX_BODY = 1 << 20
MAX_LIST = 10_000


class Driver(Protocol):
    """What the API asks of the controller."""

    def adopt(self, state: RolloutState) -> None: ...

    def poke(self, name: str) -> None: ...


class ApiError(Exception):
    """A request the API refuses: answered ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route answering these error codes."""
    return {c: {"model": m.Error} for c in codes}


async def read_body(request: Request) -> bytes:
    """The body, at most MAX_BODY bytes whatever Content-Length claims."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, f"the body must be at most {MAX_BODY} bytes")
    return bytes(body)


def body_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the JSON body must be an object")
    return data


def summary(state: RolloutState) -> m.Summary:
    out = status_json(state, [])
    out.pop("events")
    return m.Summary.model_validate(out)
