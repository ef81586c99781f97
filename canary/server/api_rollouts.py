"""The API's rollout routes: list, submit (create or resume), one rollout, its journal.

Handlers that touch the store are plain ``def`` (or hand their work to
``run_in_threadpool``): they run on the server's bounded thread pool, never on the event
loop and never on the scheduler's tick threads.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from canary.console.logs import fields
from canary.console.views import event_json, status_json
from canary.server import models as m
from canary.server.apikit import (
    MAX_LIST,
    ApiError,
    Driver,
    body_json,
    documented,
    read_body,
    summary,
)
from canary.server.bodies import EnvPolicy, check_document
from canary.state import RolloutState
from canary.store.base import StateStore

log = logging.getLogger("canary.server.api")


def add_rollout_routes(app: FastAPI, *, store: StateStore, controller: Driver,
                       env: EnvPolicy, reader: list[Any], operator: list[Any]) -> None:
    @app.get("/api/v1/rollouts", dependencies=reader, response_model=m.RolloutList,
             responses=documented(400, 401, 403),
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
        return m.RolloutList(rollouts=[summary(s) for s in ordered])

    @app.post("/api/v1/rollouts", dependencies=operator, status_code=201,
              response_model=m.Submitted,
              responses={200: {"model": m.Submitted, "description": "resumed"},
                         400: {"model": m.InputErrorOut, "description": "invalid rollout: the "
                               "message `canary deploy` prints (file, line, field)"},
                         **documented(401, 403, 409, 413)},
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
        check_document(text, file=file, env=env)
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
             responses=documented(400, 401, 403, 404), summary="One rollout's status.")
    def get_rollout(name: str, events: Annotated[int, Query(
            ge=0, le=MAX_LIST, description="recent events included")] = 20) -> m.Status:
        state = store.get(name)
        recent = store.events(state.id, limit=events) if events else []
        return m.Status.model_validate(status_json(state, recent))

    @app.get("/api/v1/rollouts/{name}/events", dependencies=reader, response_model=m.Events,
             responses=documented(400, 401, 403, 404),
             summary="The rollout's event journal, from ?after= on.")
    def get_events(name: str, after: Annotated[int, Query(ge=0, le=10**9)] = 0) -> m.Events:
        state = store.get(name)
        events = store.events(state.id)
        return m.Events(id=state.id, next=len(events),
                        events=[m.EventOut.model_validate(event_json(e))
                                for e in events[after:]])


def _document(body: bytes, request: Request) -> tuple[str, str | None, str]:
    """The rollout text, version and file name, from JSON or from a raw YAML body."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip() == "application/json":
        data = body_json(body)
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
