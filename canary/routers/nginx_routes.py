"""The lines canary renders into nginx's ``routes`` and ``location`` blocks.

Open-source nginx has no runtime API, so matches, affinity and mirroring are
configuration, rewritten with the weights and reloaded (nginx.py does the writing).
For an upstream ``U`` the routes block (http level) defines:

* ``U__canary`` / ``U__stable``: one upstream per side, for requests whose side is known;
* ``$canary_U_route`` (``U`` with every character that cannot be in a variable name
  replaced by ``_``): the upstream a request goes to. A matching header or cookie picks
  ``U__canary`` while the match is on; otherwise ``$canary_U_sticky``;
* ``$canary_U_sticky``: with affinity, the side named by the cookie, but only while that side
  has traffic (so a rollback sends canary cookie holders to stable); otherwise ``U``,
  the weighted upstream;
* ``$canary_U_side``: which side served the answer (from ``$upstream_addr``), for the cookie;
* ``$canary_U_mirror``: non-empty for the mirrored share of requests (``split_clients``).

The location block holds the ``proxy_pass`` to ``$canary_U_route``, the ``Set-Cookie`` of the
affinity cookie and, while mirroring, the ``mirror`` subrequest: an internal nested
location that drops the unselected share (204) and sends the rest to ``U__canary``; nginx
discards mirror answers, so clients only ever see the primary answer.

The first line of the routes block records the routes it renders
(``# canary-routes match=on mirror=50``) so ``get_routes`` reads back what nginx serves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from canary.errors import RouterError
from canary.model import Weights
from canary.routers.features import Match, Routes, Sticky

_STATE = "# canary-routes"


def var(upstream: str, what: str) -> str:
    """The nginx variable canary uses for ``what`` of ``upstream``."""
    return f"$canary_{re.sub(r'[^A-Za-z0-9_]', '_', upstream)}_{what}"


def _source(match: Match) -> str:
    if match.header is not None:
        return "$http_" + match.header.lower().replace("-", "_")
    return f"$cookie_{match.cookie}"


def _key(match: Match) -> str:
    return f'"~{match.regex}"' if match.regex is not None else f'"{match.value}"'


def _server_lines(addresses: Sequence[str]) -> list[str]:
    return [f"    server {a};" for a in addresses]


def render_routes(*, upstream: str, stable: Sequence[str], canary: Sequence[str],
                  weights: Weights, routes: Routes, match: Match | None,
                  sticky: Sticky | None) -> list[str]:
    u = upstream
    route, sticky_var, side, mirror = (var(u, w) for w in ("route", "sticky", "side", "mirror"))
    fallback = sticky_var if sticky is not None else u
    lines = [f"{_STATE} match={'on' if routes.match else 'off'} mirror={routes.mirror}",
             f"upstream {u}__canary {{", *_server_lines(canary), "}",
             f"upstream {u}__stable {{", *_server_lines(stable), "}"]
    source = _source(match) if match is not None else "$request_method"
    lines += [f"map {source} {route} {{", f"    default {fallback};"]
    if match is not None and routes.match:
        lines.append(f"    {_key(match)} {u}__canary;")
    lines.append("}")
    if sticky is not None:
        lines += [f"map $cookie_{sticky.cookie} {sticky_var} {{", f"    default {u};"]
        if weights.canary > 0 or routes.match:
            lines.append(f"    canary {u}__canary;")
        if weights.stable > 0:
            lines.append(f"    stable {u}__stable;")
        lines += ["}", f"map $upstream_addr {side} {{", "    default stable;",
                  *(f'    "{a}" canary;' for a in canary), "}"]
    lines += [f'split_clients "${{request_id}}" {mirror} {{']
    if 0 < routes.mirror < 100:
        lines.append(f'    {routes.mirror}% "1";')
    lines += [f'    * "{"1" if routes.mirror == 100 else ""}";', "}"]
    return lines


def render_location(*, upstream: str, stable: Sequence[str], canary: Sequence[str],
                    weights: Weights, routes: Routes, match: Match | None,
                    sticky: Sticky | None) -> list[str]:
    u = upstream
    route, side, mirror = (var(u, w) for w in ("route", "side", "mirror"))
    lines = [f"proxy_pass http://{route};"]
    if sticky is not None:
        # `always`: error answers carry the cookie too, so a client is not re-split on
        # every failed request. (add_header here hides add_header of outer levels.)
        lines.append(f'add_header Set-Cookie "{sticky.cookie}={side}; Path=/; '
                     f'Max-Age={int(sticky.lifetime)}; HttpOnly; SameSite=Lax" always;')
    if routes.mirror > 0:
        lines += [f"mirror /__canary_mirror_{u};", "mirror_request_body on;"]
    lines += [f"location = /__canary_mirror_{u} {{", "    internal;",
              f'    if ({mirror} = "") {{', "        return 204;", "    }",
              f"    proxy_pass http://{u}__canary$request_uri;", "}"]
    return lines


def parse_routes(block: Sequence[str]) -> Routes:
    """The routes a rendered routes block serves (its first line says)."""
    for line in block:
        text = line.strip()
        if not text:
            continue
        if not text.startswith(_STATE):
            break
        fields = dict(part.split("=", 1) for part in text.removeprefix(_STATE).split()
                      if "=" in part)
        try:
            return Routes(match=fields.get("match") == "on", mirror=int(fields.get("mirror", 0)))
        except ValueError as exc:
            raise RouterError(f"unreadable routes state line {text!r}") from exc
    return Routes()
