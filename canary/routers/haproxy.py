"""HAProxy adapter: moves traffic by changing server weights through the runtime API.

HAProxy open source has no notion of a traffic split, only absolute server weights
(0..256) inside one backend with ``balance roundrobin``. This module owns the mapping
between our percentages and those weights, and speaks the runtime API (the ``stats
socket``) directly: one command per connection, reply read to EOF, errors recognised from
the reply text because the API has no status codes.

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
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from canary.durations import parse_duration
from canary.errors import RouterError
from canary.model import Weights
from canary.routers.features import Match, Routes, Sticky

FEATURES = frozenset({"match", "sticky"})

SCALE = 2  # weight units per percent on each side; 100% -> 200 <= 256

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
# HAProxy proxy and server names: letters, digits and "-_.:" (no spaces, no ";" that
# would chain a second runtime command).
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_GET_WEIGHT = re.compile(r"^(\d+) \(initial (\d+)\)$")


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


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


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
    def endpoint(self) -> str:
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        assert self.address is not None
        return f"{self.address[0]}:{self.address[1]}"

    def describe(self) -> str:
        return (f"haproxy {self.endpoint} backend {self.backend} "
                f"(stable: {', '.join(self.stable)}; canary: {', '.join(self.canary)})")

    def ensure(self) -> None:
        level = self._command("show cli level").strip()
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
        reply = self._command(command)
        text = reply.strip()
        if text.startswith(("Unknown ACL", "Missing ACL", "Unknown command")) or \
                "not found" in text.lower():
            raise RouterError(f"HAProxy ({self.endpoint}) refused `{command}`: {text[:200]}; "
                              f"check that haproxy.cfg has an `acl ... -f {self.match_acl}` "
                              "line in the backend")
        return reply

    def _maintenance(self, servers: Sequence[str]) -> dict[str, bool]:
        """Which of ``servers`` are in maintenance (forced by the runtime API or config)."""
        reply = self._command(f"show servers state {self.backend}")
        state: dict[str, bool] = {}
        for line in reply.splitlines():
            fields = line.split()
            if len(fields) > 6 and not line.startswith("#") and fields[3] in servers:
                state[fields[3]] = bool(int(fields[6]) & 0x1)
        missing = [s for s in servers if s not in state]
        if missing:
            raise RouterError(f"HAProxy ({self.endpoint}) did not report the state of "
                              f"{', '.join(missing)} in backend {self.backend}")
        return state

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
                command = f"set server {self.backend}/{name} state {state}"
                reply = self._command(command).strip()
                if reply:
                    raise RouterError(f"HAProxy ({self.endpoint}) refused `{command}`: {reply}")

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
            command = f"set weight {self.backend}/{name} {weight}"
            reply = self._command(command).strip()
            if reply:
                raise RouterError(f"HAProxy ({self.endpoint}) refused `{command}`: {reply}")
        if self.sticky:
            self._apply_states(weights, match=self._matching())

    def _current(self) -> dict[str, int]:
        return {name: self._weight(name) for name in (*self.stable, *self.canary)}

    def _weight(self, server: str) -> int:
        command = f"get weight {self.backend}/{server}"
        reply = self._command(command).strip()
        match = _GET_WEIGHT.match(reply)
        if match is None:
            raise RouterError(
                f"HAProxy ({self.endpoint}) answered `{command}` with {reply!r}; check that "
                f"backend {self.backend} has a server named {server} in haproxy.cfg")
        return int(match.group(1))

    def _command(self, command: str) -> str:
        """Send one command on a fresh connection and read the reply to EOF."""
        try:
            with self._connect() as conn:
                conn.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise RouterError(
                f"HAProxy runtime API at {self.endpoint} did not answer `{command}` within "
                f"{self.timeout}s; check that it is a HAProxy stats socket") from exc
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise RouterError(
                f"cannot reach the HAProxy runtime API at {self.endpoint} ({exc.strerror}); "
                "check that haproxy is running and haproxy.cfg has a matching "
                "`stats socket ... level admin` line") from exc
        except OSError as exc:
            raise RouterError(
                f"HAProxy runtime API at {self.endpoint} failed on `{command}`: {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def _connect(self) -> socket.socket:
        if self.address is not None:
            return socket.create_connection(self.address, timeout=self.timeout)
        assert self.socket_path is not None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(self.timeout)
            conn.connect(self.socket_path)
        except BaseException:
            conn.close()
            raise
        return conn


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
