"""The JSON bodies of the `canary serve` API, as pydantic models.

The routes return these models and FastAPI writes /api/v1/openapi.json from them, so the
published schema is the shape actually sent. The field names are the wire names
(camelCase, as `canary status -o json` prints them). ``extra="allow"``: a field added to
the status object (canary/console/views.py) passes through before it is described here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class Gate(_Wire):
    status: str | None = None
    attempts: int = 0
    message: str = ""


class EventOut(_Wire):
    at: str
    kind: str
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class Summary(_Wire):
    """A rollout's status object, without its events."""

    name: str
    id: str
    service: str
    phase: str = Field(description="pending, progressing, paused, succeeded, failed, aborted...")
    stage: int
    canaryWeight: int | None = None  # noqa: N815 - the wire name
    desiredWeight: int | None = None  # noqa: N815
    version: str
    stableVersion: str | None = None  # noqa: N815
    message: str = ""
    reason: str | None = None
    needsHuman: bool = False  # noqa: N815
    attempt: int = 0
    pendingCommand: str | None = None  # noqa: N815
    gate: Gate
    analysis: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="latest measurement per metric")
    lastAnalysisAt: str | None = None  # noqa: N815
    pauseUntil: str | None = None  # noqa: N815
    createdAt: str  # noqa: N815
    updatedAt: str  # noqa: N815
    finishedAt: str | None = None  # noqa: N815


class Status(Summary):
    events: list[EventOut] = Field(default_factory=list, description="the most recent events")


class RolloutList(_Wire):
    rollouts: list[Summary]


class Submitted(_Wire):
    resumed: bool = Field(description="true: the active rollout of that name was found (200)")
    router: str
    stages: list[int]
    policy: str
    eventCount: int = Field(description="events recorded at submission: follow from here")  # noqa: N815
    rollout: Status


class Events(_Wire):
    id: str
    next: int = Field(description="pass as ?after= to get only newer events")
    events: list[EventOut]


class CommandAccepted(_Wire):
    name: str
    command: str
    message: str
    rollout: Summary


class SubmitBody(BaseModel):
    """POST /api/v1/rollouts as JSON (a raw YAML body with ?version=&file= works too)."""

    document: str = Field(description="the rollout file's YAML text")
    version: str | None = Field(default=None, description="overrides spec.version")
    file: str | None = Field(default=None, description="the file's path: named in errors; a "
                             "relative analysis.policy resolves from its folder on the "
                             "controller host")


class CommandBody(BaseModel):
    full: bool = Field(default=False, description="promote: straight to 100%")


class Error(BaseModel):
    error: str


class InputErrorOut(Error):
    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None


class Health(BaseModel):
    ok: bool
    error: str | None = None
