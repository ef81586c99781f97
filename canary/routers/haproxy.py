"""HAProxy adapter: moves traffic by changing server weights through the runtime API.

HAProxy open source has no notion of a traffic split, only absolute server weights
(0..256) inside one backend with ``balance roundrobin``. This module owns the mapping
between our percentages and those weights, and drives them through the runtime API (the
``stats socket``; haproxy_api.py speaks it).

Mapping (``SCALE`` = 2): a side that should carry ``p`` percent gets a total weight of
``2 * p``, spread over its servers as evenly as integers allow (servers differ by at most
one). The two sides always sum to 200, so every percentage round-trips exactly and no
server ever exceeds 200 (HAProxy's limit is 256). With more servers on a side than
``2 * p``, some of them get weight 0 at that percentage: the side's share is still right.

Reading back converts whatever weights are in effect (ours, or set by hand) to the nearest
percentage, except that a side with any weight at all is never reported as 0%: a rollback
is confirmed only when the canary really gets nothing. All servers at weight 0 means the
backend serves no traffic; that is reported as a RouterError, never guessed as a split.

Runtime weights are lost when HAProxy restarts; the controller re-applies them every tick.
Start canary servers at weight 0 in haproxy.cfg so a restart falls back to all-stable.

Header/cookie matches and session affinity (``match``, ``sticky``; see features.py) need
a few lines in haproxy.cfg, because HAProxy cannot add rules at run time; canary then
drives them through the runtime API::

    backend checkout
        balance roundrobin
        acl canary_match req.hdr(X-Canary) -m str -f /etc/haproxy/checkout-canary.acl
        use-server canary-1 if canary_match           # match: the ACL file's entries
        cookie CANARY insert indirect nocache maxlife 1h   # sticky
        option redispatch
        server stable-1 10.0.0.1:8080 weight 200 cookie s1
        server canary-1 10.0.0.2:8080 weight 0 cookie c1

The match is on while the ACL file (``matchAcl``) holds the configured value or pattern
(``add acl``) and off when it is empty (``clear acl``). With cookie persistence a client
keeps its server even at weight 0, so with ``sticky`` a side at 0% is put in maintenance
(``set server ... state maint``): its cookie holders are redispatched by weight, which is
how a rollback moves them back to stable. The canary stays ready at 0% while the match is
on, so matching requests still reach it. Mirroring is not something HAProxy does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from canary.durations import parse_duration
from canary.errors import RouterError
from canary.model import Weights
from canary.routers.features import Match, Routes, Sticky
from canary.routers.haproxy_api import RuntimeAPI, parse_address

FEATURES = frozenset({"match", "sticky"})

SCALE = 2  # weight units per percent on each side; 100% -> 200 <= 256

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
# HAProxy proxy and server names: letters, digits and "-_.:" (no spaces, no ";" that
# would chain a second runtime command).
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


def _names(value: object) -> object:
    return [value] if isinstance(value, str) else value


class Config(BaseModel):
    """The ``spec.router`` block for ``type: haproxy``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              frozen=True)

    socket: str | None = None
    address: str | None = None
    backend: str
    stable: Annotated[list[str], BeforeValidator(_names), Field(min_length=1)]
    canary: Annotated[list[str], BeforeValidator(_names), Field(min_length=1)]
    timeout: Seconds = 2.0
    match: Match | None = None
    match_acl: str | None = None  # the ACL file named by `-f` in haproxy.cfg
    sticky: Sticky | None = None

    @field_validator("backend")
    @classmethod
    def _backend_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a HAProxy backend name (letters, digits, -_.:)")
        return v

    @field_validator("stable", "canary")
    @classmethod
    def _server_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a HAProxy server name (letters, digits, -_.:)")
        if len(set(v)) != len(v):
            raise ValueError("a server is listed twice")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            parse_address(v)
        return v

    @model_validator(mode="after")
    def _one_endpoint_disjoint_sides(self) -> Config:
        if (self.socket is None) == (self.address is None):
            raise ValueError("give exactly one of socket (a unix socket path) or address "
                             "(host:port of a TCP stats socket)")
        both = set(self.stable) & set(self.canary)
        if both:
            raise ValueError(f"servers on both sides: {', '.join(sorted(both))}")
        if (self.match is None) != (self.match_acl is None):
            raise ValueError("match needs matchAcl, the ACL file its `acl ... -f FILE` line "
                             "in haproxy.cfg reads (and matchAcl needs match)")
        if self.match_acl is not None and not _ACL_FILE.match(self.match_acl):
            raise ValueError(f"matchAcl {self.match_acl!r} is not a file path without spaces")
        return self


_ACL_FILE = re.compile(r"^[^\s;#]{1,4096}$")


def spread(total: int, servers: Sequence[str]) -> dict[str, int]:
    """``total`` over ``servers`` as evenly as integers allow; the first ones get the extra."""
    base, extra = divmod(total, len(servers))
    return {name: base + (1 if i < extra else 0) for i, name in enumerate(servers)}


def weights_for(split: Weights, *, stable: Sequence[str], canary: Sequence[str]) -> dict[str, int]:
    """The absolute HAProxy weight of every server for ``split`` (see module docstring)."""
    return {**spread(split.stable * SCALE, stable), **spread(split.canary * SCALE, canary)}


def split_from(current: Mapping[str, int], *, stable: Sequence[str],
               canary: Sequence[str]) -> Weights | None:
    """The split ``current`` weights produce; None when no server has any weight."""
    s = sum(current[n] for n in stable)
    c = sum(current[n] for n in canary)
    total = s + c
    if total == 0:
        return None
    pct = (200 * c + total) // (2 * total)  # round half up, integers only
    if c > 0:
        pct = max(pct, 1)  # a canary that gets anything is never reported as 0%
    if s > 0:
        pct = min(pct, 99)  # nor a stable side that gets anything as 100% canary
    return Weights(canary=pct)


@dataclass(frozen=True)
class HAProxyRouter:
    """Drives one backend's stable and canary servers through the HAProxy runtime API."""

    backend: str
    stable: tuple[str, ...]
    canary: tuple[str, ...]
    socket_path: str | None = None
    address: tuple[str, int] | None = None
    timeout: float = 2.0
    match_acl: str | None = None
    match_entry: str | None = None  # the value or pattern the ACL file holds while on
    sticky: bool = False

    @property
    def _api(self) -> RuntimeAPI:
        return RuntimeAPI(socket_path=self.socket_path, address=self.address,
                          timeout=self.timeout)

    @property
    def endpoint(self) -> str:
        return self._api.endpoint

    def describe(self) -> str:
        return (f"haproxy {self.endpoint} backend {self.backend} "
                f"(stable: {', '.join(self.stable)}; canary: {', '.join(self.canary)})")

    def ensure(self) -> None:
        level = self._api.command("show cli level").strip()
        if level in ("user", "operator"):
            raise RouterError(
                f"HAProxy runtime API at {self.endpoint} runs at level {level!r}; changing "
                "weights needs `level admin` on the `stats socket` line in haproxy.cfg")
        if level != "admin":
            raise RouterError(
                f"HAProxy runtime API at {self.endpoint} answered `show cli level` with "
                f"{level[:80]!r}; canary needs HAProxy 2.0 or later on a stats socket")
        self._current()  # every server of the backend answers `get weight`

    def get_weights(self) -> Weights:
        current = self._current()
        split = split_from(current, stable=self.stable, canary=self.canary)
        if split is None:
            raise RouterError(
                f"every server of HAProxy backend {self.backend} ({self.endpoint}) has weight "
                "0: the backend serves no traffic, so there is no split to report; check "
                "the weights in haproxy.cfg or set them with `set weight`")
        # Cookie holders still reach a weight-0 server that is not in maintenance (after
        # a HAProxy restart, say): such a canary is not really at 0%.
        if (self.sticky and split.canary == 0 and not self._matching()
                and any(not maint for maint in self._maintenance(self.canary).values())):
            return Weights(canary=1)
        return split

    def set_routes(self, routes: Routes) -> None:
        if routes.mirror:
            raise RouterError("HAProxy cannot mirror traffic; use nginx, gateway-api or istio")
        if self.match_acl is None or self.match_entry is None:
            if routes.match:
                raise RouterError("this router has no match configured (spec.router.match)")
            return
        if routes.match != self._matching():
            self._acl_command(f"clear acl {self.match_acl}")
            if routes.match:
                self._acl_command(f"add acl {self.match_acl} {self.match_entry}")
        if self.sticky:
            self._apply_states(split_from(self._current(), stable=self.stable,
                                          canary=self.canary), match=routes.match)

    def get_routes(self) -> Routes:
        return Routes(match=self._matching())

    def _matching(self) -> bool:
        if self.match_acl is None:
            return False
        reply = self._acl_command(f"show acl {self.match_acl}")
        return any(line.split()[1:] == [self.match_entry] for line in reply.splitlines()
                   if line.strip())

    def _acl_command(self, command: str) -> str:
        return self._api.acl(command, acl_file=self.match_acl)

    def _maintenance(self, servers: Sequence[str]) -> dict[str, bool]:
        return self._api.maintenance(self.backend, servers)

    def _apply_states(self, split: Weights | None, *, match: bool) -> None:
        """Sticky: a side at 0% goes into maintenance so its cookie holders move away."""
        if split is None:
            return
        wanted = {**{n: split.stable == 0 for n in self.stable},
                  **{n: split.canary == 0 and not match for n in self.canary}}
        current = self._maintenance(list(wanted))
        # Bring servers back before sending others away: a side is never left empty.
        for name in sorted(wanted, key=lambda n: wanted[n]):
            if current[name] != wanted[name]:
                state = "maint" if wanted[name] else "ready"
                self._api.change(f"set server {self.backend}/{name} state {state}")

    def set_weights(self, weights: Weights) -> None:
        wanted = weights_for(weights, stable=self.stable, canary=self.canary)
        # Reading first checks every server exists before anything changes, so a refused
        # change leaves the previous split whole.
        current = self._current()
        changes = [(n, w) for n, w in wanted.items() if current[n] != w]
        # Raise before lowering: at every moment some server keeps weight, so the backend
        # is never empty, and the share moves monotonically from the old split to the new.
        changes.sort(key=lambda change: change[1] - current[change[0]], reverse=True)
        for name, weight in changes:
            self._api.change(f"set weight {self.backend}/{name} {weight}")
        if self.sticky:
            self._apply_states(weights, match=self._matching())

    def _current(self) -> dict[str, int]:
        return {name: self._api.weight(self.backend, name)
                for name in (*self.stable, *self.canary)}


def from_config(config: Config) -> HAProxyRouter:
    return HAProxyRouter(
        backend=config.backend,
        stable=tuple(config.stable),
        canary=tuple(config.canary),
        socket_path=config.socket,
        address=parse_address(config.address) if config.address is not None else None,
        timeout=config.timeout,
        match_acl=config.match_acl,
        match_entry=(None if config.match is None
                     else config.match.value if config.match.value is not None
                     else config.match.regex),
        sticky=config.sticky is not None,
    )
