"""nginx adapter: moves traffic by rewriting one marked upstream block and reloading.

Open-source nginx has no runtime weight API, so the split lives in the config file. canary
owns only the lines between two markers inside the user's upstream block and never
touches anything else in the file::

    upstream checkout {
        keepalive 16;                      # yours, left alone
        # canary:begin checkout
        server 10.0.0.1:8080 weight=19;    # rewritten by canary
        server 10.0.0.2:8080 weight=1;
        # canary:end checkout
    }

A change is written to a temporary file beside the config, checked with ``nginx -t``
against that file, moved into place with ``os.replace`` and applied with ``nginx -s
reload``. Testing the temporary file (rather than the live one, then restoring) means the
file on disk is never a config nginx refused, even if canary is killed half-way. If the
reload itself fails, the previous file is put back so the file keeps matching what nginx
serves. ``get_weights`` therefore reads the split from the file.

Header/cookie matches, session affinity and mirroring (``match``, ``sticky``, a stage's
``mirror``; see features.py) need two more marked blocks, which canary renders whole: one
at ``http`` level (an upstream per side, the maps that pick one, the mirror split) and one
inside the ``location`` that serves the service (its ``proxy_pass``, the affinity cookie,
the ``mirror`` subrequest)::

    http {
        upstream checkout { ... the block above ... }
        # canary:begin checkout routes
        # canary:end checkout routes
        server {
            location / {
                # canary:begin checkout location
                # canary:end checkout location
            }
        }
    }

Routing order: a matching request goes to the canary; otherwise an affinity cookie names
the side (honoured only while that side has traffic, so a rollback moves canary cookie
holders back to stable); otherwise the weighted upstream decides, and the answer sets the
cookie to the side that served it. See nginx_routes.py for the rendered lines, and
nginx_blocks.py for how the marked blocks are found and the weights rendered.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from canary.durations import parse_duration
from canary.errors import RouterError
from canary.model import Weights
from canary.routers.features import Match, Routes, Sticky
from canary.routers.nginx_blocks import (
    Block,
    find_block,
    locate_upstream,
    render_servers,
    split_from,
)
from canary.routers.nginx_routes import parse_routes, render_location, render_routes

FEATURES = frozenset({"match", "sticky", "mirror"})

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
# host:port, [v6]:port or unix:/path; no spaces, ";" or braces that could escape the block.
_ADDRESS = re.compile(r"^(unix:/[^\s;{}#]+|[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5})$")
_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _addresses(value: object) -> object:
    return [value] if isinstance(value, str) else value


class Config(BaseModel):
    """The ``spec.router`` block for ``type: nginx``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              frozen=True)

    config: str
    upstream: str
    stable: Annotated[list[str], BeforeValidator(_addresses), Field(min_length=1)]
    canary: Annotated[list[str], BeforeValidator(_addresses), Field(min_length=1)]
    prefix: str | None = None
    error_log: str | None = None
    nginx_binary: str = "nginx"
    timeout: Seconds = 10.0
    match: Match | None = None
    sticky: Sticky | None = None

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, v: str) -> str:
        if not _UPSTREAM_NAME.match(v):
            raise ValueError(f"{v!r} is not an nginx upstream name (letters, digits, -_.)")
        return v

    @field_validator("stable", "canary")
    @classmethod
    def _servers(cls, v: list[str]) -> list[str]:
        for address in v:
            if not _ADDRESS.match(address):
                raise ValueError(f"{address!r} is not host:port, [v6]:port or unix:/path")
        if len(set(v)) != len(v):
            raise ValueError("a server is listed twice")
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> Config:
        both = set(self.stable) & set(self.canary)
        if both:
            raise ValueError(f"servers on both sides: {', '.join(sorted(both))}")
        return self


@dataclass(frozen=True)
class NginxRouter:
    """Drives one managed upstream block of an nginx config file."""

    config: str  # absolute path
    upstream: str
    stable: tuple[str, ...]
    canary: tuple[str, ...]
    prefix: str | None = None
    error_log: str | None = None
    nginx_binary: str = "nginx"
    timeout: float = 10.0
    match: Match | None = None
    sticky: Sticky | None = None

    def describe(self) -> str:
        return f"nginx upstream {self.upstream} in {self.config}"

    def ensure(self) -> None:
        lines = self._read()
        block = self._locate(lines)
        split_from(lines[block.start:block.end], stable=self.stable, canary=self.canary,
                   where=self.config)
        if self._routes_in(lines) is not None:
            self._find_block(lines, "location")
        self._nginx("-t", config=self.config)

    def get_weights(self) -> Weights:
        lines = self._read()
        block = self._locate(lines)
        split = split_from(lines[block.start:block.end], stable=self.stable,
                           canary=self.canary, where=self.config)
        if split is None:
            raise RouterError(f"{self.config}: no server in upstream {self.upstream}'s managed "
                              "block takes traffic (all down or missing); no split to report")
        return split

    def set_weights(self, weights: Weights) -> None:
        lines = self._read()
        routes = self._routes_in(lines)
        self._apply(lines, weights, routes)

    def get_routes(self) -> Routes:
        return self._routes_in(self._read()) or Routes()

    def set_routes(self, routes: Routes) -> None:
        lines = self._read()
        if self._routes_in(lines) is None:
            if routes == Routes():
                return  # nothing asked of a config without the routing blocks
            raise RouterError(
                f"{self.config}: matches and mirroring need the `# canary:begin "
                f"{self.upstream} routes` and `# canary:begin {self.upstream} location` "
                "blocks (see the nginx router's documentation)")
        if routes.match and self.match is None:
            raise RouterError("this router has no match configured (spec.router.match)")
        block = self._locate(lines)
        split = split_from(lines[block.start:block.end], stable=self.stable,
                           canary=self.canary, where=self.config)
        self._apply(lines, split or Weights(canary=0), routes)

    def _routes_in(self, lines: Sequence[str]) -> Routes | None:
        """The routes the file's routes block renders; None when it has no such block."""
        found = self._find_block(lines, "routes")
        if found is None:
            if self.match is not None or self.sticky is not None:
                raise RouterError(
                    f"{self.config}: spec.router.match and sticky need a `# canary:begin "
                    f"{self.upstream} routes` ... `# canary:end {self.upstream} routes` block "
                    "at http level and a `location` block inside the service's location")
            return None
        return parse_routes(lines[found.start:found.end])

    def _apply(self, lines: list[str], weights: Weights, routes: Routes | None) -> None:
        block = self._locate(lines)
        servers = render_servers(weights, stable=self.stable, canary=self.canary,
                                 indent=block.indent)
        new = [*lines[:block.start], *(s + "\n" for s in servers), *lines[block.end:]]
        if routes is not None:
            for kind, render in (("routes", render_routes), ("location", render_location)):
                found = self._find_block(new, kind)
                if found is None:
                    raise RouterError(f"{self.config}: no `# canary:begin {self.upstream} "
                                      f"{kind}` ... `# canary:end {self.upstream} {kind}` block")
                body = render(upstream=self.upstream, stable=self.stable, canary=self.canary,
                              weights=weights, routes=routes, match=self.match,
                              sticky=self.sticky)
                new = [*new[:found.start], *(found.indent + b + "\n" for b in body),
                       *new[found.end:]]
        if new == lines:
            return  # already the file nginx was last reloaded with
        old_text, new_text = "".join(lines), "".join(new)
        candidate = self._write_temp(new_text)
        try:
            try:
                self._nginx("-t", config=candidate)
            except RouterError as exc:
                raise RouterError(f"nginx refused the new weights for upstream {self.upstream} "
                                  f"(tested as a copy of {self.config}, which is unchanged): "
                                  f"{exc}") from exc
            os.replace(candidate, self.config)
        finally:
            if os.path.exists(candidate):
                os.unlink(candidate)
        try:
            self._nginx("-s", "reload", config=self.config)
        except RouterError:
            # nginx still serves the previous config: put its file back so they agree.
            os.replace(self._write_temp(old_text), self.config)
            raise

    def _find_block(self, lines: Sequence[str], kind: str) -> Block | None:
        return find_block(lines, upstream=self.upstream, kind=kind, where=self.config)

    def _locate(self, lines: Sequence[str]) -> Block:
        return locate_upstream(lines, upstream=self.upstream, where=self.config)

    def _read(self) -> list[str]:
        try:
            with open(self.config, encoding="utf-8") as f:
                return f.readlines()
        except OSError as exc:
            raise RouterError(f"cannot read nginx config {self.config}: {exc.strerror}; check "
                              "the router's config path") from exc

    def _write_temp(self, text: str) -> str:
        directory = os.path.dirname(self.config)
        try:
            mode = os.stat(self.config).st_mode & 0o7777
            fd, path = tempfile.mkstemp(dir=directory, prefix=".canary-", suffix=".conf")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(path, mode)
        except OSError as exc:
            raise RouterError(f"cannot write a new nginx config beside {self.config}: "
                              f"{exc.strerror}; check the directory is writable") from exc
        return path

    def _nginx(self, *args: str, config: str) -> None:
        argv = [self.nginx_binary]
        if self.prefix is not None:
            argv += ["-p", self.prefix]
        if self.error_log is not None:
            argv += ["-e", self.error_log]
        argv += ["-c", config, *args]
        what = " ".join(argv)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except FileNotFoundError as exc:
            raise RouterError(f"nginx binary {self.nginx_binary!r} not found; set nginxBinary "
                              "to its path") from exc
        except subprocess.TimeoutExpired as exc:
            raise RouterError(f"`{what}` did not finish within {self.timeout}s") from exc
        except OSError as exc:
            raise RouterError(f"cannot run `{what}`: {exc}") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise RouterError(f"`{what}` failed (exit {done.returncode}): {tail}")


def from_config(config: Config) -> NginxRouter:
    path = config.config
    if not os.path.isabs(path):  # nginx reads a relative -c from its prefix
        path = os.path.join(config.prefix or os.getcwd(), path)
    return NginxRouter(
        config=os.path.abspath(path),
        upstream=config.upstream,
        stable=tuple(config.stable),
        canary=tuple(config.canary),
        prefix=config.prefix,
        error_log=config.error_log,
        nginx_binary=config.nginx_binary,
        timeout=config.timeout,
        match=config.match,
        sticky=config.sticky,
    )
