"""The API's operator commands: POST /api/v1/rollouts/NAME/{pause,resume,abort,promote,retry}.

A command is recorded in the store (canary/rollout/commands.py), exactly as `canary pause`
and friends do, and acted on by whichever replica drives the rollout: this one is poked at
once when it does, a retry is adopted here. The answer is 202: recorded, not yet done.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from canary.console.logs import fields
from canary.model import Command
from canary.rollout.commands import record_command
from canary.server import models as m
from canary.server.apikit import Driver, body_json, documented, read_body, summary
from canary.store.base import StateStore

log = logging.getLogger("canary.server.api")

COMMANDS = ("pause", "resume", "abort", "promote", "retry")


def add_command_routes(app: FastAPI, *, store: StateStore, controller: Driver,
                       operator: list[Any]) -> None:
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
                                 rollout=summary(state))

    def command_route(word: str) -> None:
        async def command(request: Request, name: str,
                          full: Annotated[bool, Query(description="promote: to 100% at once")]
                          = False) -> JSONResponse:
            body = await read_body(request)
            if body:
                full = full or body_json(body).get("full") is True
            out = await run_in_threadpool(_command, name, word, full)
            return JSONResponse(out.model_dump(mode="json"), status_code=202)

        app.post(f"/api/v1/rollouts/{{name}}/{word}", dependencies=operator, status_code=202,
                 response_model=m.CommandAccepted,
                 responses=documented(400, 401, 403, 404, 409),
                 summary=f"Record the operator command '{word}'; the controller acts on it.",
                 name=f"command_{word}")(command)

    for word in COMMANDS:
        command_route(word)
