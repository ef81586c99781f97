"""What a router can do beyond a weighted split: request matches, session affinity, mirroring.

A weighted split is every router's job (the ``Router`` port). Three things only some
routers can do, and a rollout that asks for one of them from a router that cannot must be
refused before anything moves, never silently ignored:

* ``match``: requests carrying a header or cookie value go to the canary whatever the
  weight (an A/B audience, testers, a preview), and back to stable after a rollback.
* ``sticky``: a client sent to one version keeps going to it while the weights change
  (a cookie wins over the weight), so no user flips between versions from one request to
  the next; a side that drops to 0% loses its cookie holders.
* ``mirror``: a share of live requests is copied to the canary and its answers discarded.

The ``spec.router`` block carries ``match`` and ``sticky`` (validated by the models below,
shared by the adapters); mirroring is a property of a stage. A router module declares what
it supports in ``FEATURES``; routers that can also change matches and mirroring at run
time implement ``RoutingRules``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from canary.durations import parse_duration

Feature = Literal["match", "sticky", "mirror"]
FEATURE_NAMES: dict[str, str] = {
    "match": "header and cookie matches (spec.router.match)",
    "sticky": "session affinity (spec.router.sticky)",
    "mirror": "traffic mirroring (a stage with mirror:)",
}

# Header and cookie names are RFC 7230 tokens. Values and patterns are rendered into
# router configuration (an nginx map, a HAProxy ACL file), so quotes, ";", braces,
# backslash-free whitespace and control characters are refused rather than escaped.
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_VALUE = re.compile(r"^[A-Za-z0-9._~:/@+=,!*-]{1,256}$")
_PATTERN = re.compile(r"^[^\s\"';{}\x00-\x1f\x7f]{1,256}$")


def _token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{value!r} is not a valid {what} name (letters, digits and "
                         "!#$%&'*+.^_`|~- only)")
    return value


class Match(BaseModel):
    """``spec.router.match``: which requests always go to the canary."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              frozen=True)

    header: str | None = None
    cookie: str | None = None
    value: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> Match:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("give exactly one of header or cookie")
        if (self.value is None) == (self.regex is None):
            raise ValueError("give exactly one of value (exact match) or regex")
        _token(self.header or self.cookie or "", "header" if self.header else "cookie")
        if self.value is not None and not _VALUE.match(self.value):
            raise ValueError(f"value {self.value!r} may hold only letters, digits and "
                             "._~:/@+=,!*- (use regex for anything else)")
        if self.regex is not None:
            if not _PATTERN.match(self.regex):
                raise ValueError("regex may not hold whitespace, quotes, ';' or braces")
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from exc
        return self

    def describe(self) -> str:
        what = f"header {self.header}" if self.header else f"cookie {self.cookie}"
        how = f"= {self.value}" if self.value is not None else f"~ {self.regex}"
        return f"{what} {how}"


def _lifetime(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


class Sticky(BaseModel):
    """``spec.router.sticky``: the affinity cookie and how long a client keeps it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              frozen=True)

    cookie: str
    lifetime: Annotated[float, BeforeValidator(_lifetime),
                        Field(gt=0, le=366 * 86400)] = 3600.0

    @model_validator(mode="after")
    def _cookie_name(self) -> Sticky:
        _token(self.cookie, "cookie")
        return self


@dataclass(frozen=True)
class Routes:
    """The run-time routing rules beside the split: match on or off, mirrored percent."""

    match: bool = False
    mirror: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.mirror <= 100:
            raise ValueError(f"mirror must be 0..100 percent, got {self.mirror}")


@runtime_checkable
class RoutingRules(Protocol):
    """Optional capability of a Router: turn the match on or off, mirror a share.

    ``set_routes`` is absolute and idempotent like ``set_weights``; ``get_routes`` reads
    what is in effect. Failures raise ``RouterError``.
    """

    def set_routes(self, routes: Routes) -> None: ...

    def get_routes(self) -> Routes: ...
