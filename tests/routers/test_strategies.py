"""Header and cookie matches, session affinity and mirroring through real HAProxy and nginx.

Traffic is counted: by the answer each client gets (which backend served it) and, for
mirroring, by the requests each backend received. One HAProxy and one nginx per module,
configured for the features, in front of their own named backends.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from canary.errors import InputError, RouterError
from canary.model import Weights
from canary.routers import haproxy, nginx
from canary.routers.features import Match, Routes, Sticky
from canary.routers.nginx_routes import parse_routes, render_routes
from canary.routers.registry import build_router, require_feature
from canary.specs import RouterSpec
from lab import nginx as nginx_lab
from lab.backends import Backend, start_backends
from lab.haproxy import start_haproxy
from lab.proc import Server

pytestmark = pytest.mark.servers

HEADER = "X-Canary"
COOKIE = "canary_app"


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, Backend]]:
    running = start_backends(("stable-1", "canary-1"))
    yield running
    for b in running.values():
        b.stop()


@pytest.fixture(scope="module")
def haproxy_lb(tmp_path_factory: pytest.TempPathFactory,
               apps: dict[str, Backend]) -> Iterator[Server]:
    server = start_haproxy(tmp_path_factory.mktemp("haproxy-features"), backend="app",
                           servers={n: b.port for n, b in apps.items()}, canary=["canary-1"],
                           match_header=HEADER, sticky_cookie=COOKIE)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nginx_lb(tmp_path_factory: pytest.TempPathFactory,
             apps: dict[str, Backend]) -> Iterator[Server]:
    server = nginx_lab.start_nginx(
        tmp_path_factory.mktemp("nginx-features"), upstream="app",
        stable=[apps["stable-1"].address], canary=[apps["canary-1"].address],
        match=Match(header=HEADER, value="1"), sticky=Sticky(cookie=COOKIE), routes=True)
    yield server
    server.stop()


def haproxy_router(server: Server) -> haproxy.HAProxyRouter:
    return haproxy.from_config(haproxy.Config.model_validate({
        "socket": server.info["socket"], "backend": "app", "stable": "stable-1",
        "canary": "canary-1", "match": {"header": HEADER, "value": "1"},
        "matchAcl": server.info["match_acl"], "sticky": {"cookie": COOKIE}}))


def nginx_router(server: Server, apps: dict[str, Backend]) -> nginx.NginxRouter:
    return nginx.from_config(nginx.Config.model_validate({
        "config": server.info["config"], "upstream": "app", "prefix": server.info["prefix"],
        "errorLog": server.info["error_log"], "nginxBinary": nginx_lab.NGINX,
        "stable": apps["stable-1"].address, "canary": apps["canary-1"].address,
        "match": {"header": HEADER, "value": "1"}, "sticky": {"cookie": COOKIE}}))


class Driver:
    """Sets weights and routes the way the controller does, waiting out nginx reloads."""

    def __init__(self, router: haproxy.HAProxyRouter | nginx.NginxRouter,
                 server: Server) -> None:
        self.router, self.server = router, server

    def set(self, canary: int, routes: Routes | None = None) -> None:
        self._reloaded(lambda: self.router.set_weights(Weights(canary=canary)))
        if routes is not None:
            self._reloaded(lambda: self.router.set_routes(routes))

    def _reloaded(self, change: Callable[[], None]) -> None:
        """Make one change; for nginx, wait until the workers serving it are the only ones
        (each change is a reload of its own: waiting once for two would let the workers of
        the first serve the second's traffic)."""
        if not isinstance(self.router, nginx.NginxRouter):
            change()
            return
        config = Path(str(self.server.info.get("config", "")))
        text, before = config.read_text(), nginx_lab.workers(self.server)
        change()
        if config.read_text() != text:  # reloaded: wait for the new workers
            nginx_lab.wait_for_reload(self.server, before)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.info['port']}/"


@pytest.fixture(params=["haproxy", "nginx"])
def lb(request: pytest.FixtureRequest, apps: dict[str, Backend]) -> Iterator[Driver]:
    if request.param == "haproxy":
        server = request.getfixturevalue("haproxy_lb")
        driver = Driver(haproxy_router(server), server)
    else:
        server = request.getfixturevalue("nginx_lb")
        driver = Driver(nginx_router(server, apps), server)
    driver.set(0, Routes())
    yield driver
    driver.set(0, Routes())


def tally(url: str, *, requests: int, headers: dict[str, str] | None = None) -> Counter[str]:
    """Answers per backend, as from new clients: no affinity cookie is carried over."""
    counts: Counter[str] = Counter()
    with httpx.Client(timeout=5, headers=headers) as client:
        for _ in range(requests):
            client.cookies.clear()
            response = client.get(url)
            response.raise_for_status()
            counts[response.text] += 1
    return counts


def test_matching_requests_reach_the_canary_at_5_percent(lb: Driver) -> None:
    lb.set(5, Routes(match=True))
    assert lb.router.get_routes() == Routes(match=True)
    assert tally(lb.url, requests=100, headers={HEADER: "1"}) == Counter({"canary-1": 100})
    assert tally(lb.url, requests=50, headers={HEADER: "2"})["canary-1"] <= 10
    plain = tally(lb.url, requests=400)
    share = 100 * plain["canary-1"] / 400
    assert abs(share - 5) <= 3, plain


def test_match_alone_is_an_ab_stage_and_a_rollback_ends_it(lb: Driver) -> None:
    lb.set(0, Routes(match=True))  # {match: ..., pause: 1h}: no weighted share at all
    assert tally(lb.url, requests=40, headers={HEADER: "1"}) == Counter({"canary-1": 40})
    assert tally(lb.url, requests=40) == Counter({"stable-1": 40})
    lb.set(0, Routes(match=False))  # rolled back
    assert lb.router.get_routes() == Routes(match=False)
    assert tally(lb.url, requests=40, headers={HEADER: "1"}) == Counter({"stable-1": 40})


def test_a_cookie_keeps_each_client_on_one_version_and_rollback_moves_it(lb: Driver) -> None:
    lb.set(5, Routes())
    clients = [httpx.Client(timeout=5, verify=False) for _ in range(60)]
    try:
        first = [c.get(lb.url).text for c in clients]
        assert "stable-1" in first
        for weight in (5, 25, 50):
            lb.set(weight, Routes())
            for client, version in zip(clients, first, strict=True):
                answers = {client.get(lb.url).text for _ in range(3)}
                assert answers == {version}, (weight, version, answers)
        # new clients still follow the weight at 50% (within a loose band: 60 clients)
        fresh = tally(lb.url, requests=60)
        assert 15 <= fresh["canary-1"] <= 45, fresh
        lb.set(0, Routes())  # rollback: canary cookie holders go back to stable
        assert lb.router.get_weights() == Weights(canary=0)
        for client in clients:
            assert {client.get(lb.url).text for _ in range(3)} == {"stable-1"}
    finally:
        for c in clients:
            c.close()


def test_nginx_mirrors_a_share_and_clients_only_see_stable(nginx_lb: Server,
                                                           apps: dict[str, Backend]) -> None:
    driver = Driver(nginx_router(nginx_lb, apps), nginx_lb)
    driver.set(0, Routes(mirror=50))  # {mirror: 50, pause: 5m}
    try:
        assert driver.router.get_routes() == Routes(mirror=50)
        canary_before = apps["canary-1"].hits
        answers = tally(driver.url, requests=400)
        assert answers == Counter({"stable-1": 400})
        # mirror subrequests are sent as the primary answer goes out; let the last land
        mirrored = _settled(lambda: apps["canary-1"].hits - canary_before)
        assert 140 <= mirrored <= 260, mirrored  # 50% of 400, wide band for the hash split
    finally:
        driver.set(0, Routes())
    after = apps["canary-1"].hits
    assert tally(driver.url, requests=50) == Counter({"stable-1": 50})
    assert _settled(lambda: apps["canary-1"].hits - after) == 0


def _settled(read: Callable[[], int], *, rounds: int = 20) -> int:
    """``read()`` once it stops changing (mirror subrequests land just after answers)."""
    last = -1
    value = int(read())
    for _ in range(rounds):
        if value == last:
            break
        last = value
        time.sleep(0.05)
        value = int(read())
    return value


def test_haproxy_refuses_to_mirror(haproxy_lb: Server) -> None:
    with pytest.raises(RouterError, match="cannot mirror"):
        haproxy_router(haproxy_lb).set_routes(Routes(mirror=50))


def test_a_router_that_cannot_do_a_feature_is_refused_by_name() -> None:
    with pytest.raises(InputError, match=r"'haproxy' cannot do traffic mirroring.*nginx"):
        require_feature("haproxy", "mirror", field="stages[0].mirror")
    with pytest.raises(InputError, match=r"'command' cannot do header and cookie matches"):
        build_router(RouterSpec(type="command", options={
            "setWeights": ["true"], "getWeights": ["true"],
            "match": {"header": "X-Canary", "value": "1"}}))


@pytest.mark.parametrize(("options", "complaint"), [
    ({"header": "X-Canary"}, "exactly one of value"),
    ({"header": "X-Canary", "cookie": "c", "value": "1"}, "exactly one of header"),
    ({"header": "X Canary", "value": "1"}, "not a valid header name"),
    ({"header": "X-Canary", "value": "a;b"}, "may hold only"),
    ({"cookie": "c", "regex": "("}, "does not compile"),
    ({"cookie": "c", "regex": "a b"}, "whitespace"),
])
def test_match_is_validated(options: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Match.model_validate(options)


def test_haproxy_match_needs_its_acl_file() -> None:
    with pytest.raises(ValidationError, match="matchAcl"):
        haproxy.Config.model_validate({"socket": "/s", "backend": "app", "stable": "a",
                                       "canary": "b", "match": {"header": "X", "value": "1"}})


def test_nginx_routes_render_and_read_back() -> None:
    match = Match(cookie="beta", regex="^(yes|1)$")
    lines = render_routes(upstream="check-out", stable=["a:1"], canary=["c:1"],
                          weights=Weights(canary=0), routes=Routes(match=True, mirror=25),
                          match=match, sticky=Sticky(cookie="aff"))
    text = "\n".join(lines)
    assert "map $cookie_beta $canary_check_out_route" in text
    assert '"~^(yes|1)$" check-out__canary;' in text
    # at 0% the canary cookie is not honoured unless the match is on (it is here)
    assert "canary check-out__canary;" in text and "stable check-out__stable;" in text
    assert '25% "1";' in text
    assert parse_routes(lines) == Routes(match=True, mirror=25)


def test_nginx_features_need_their_blocks(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text("http {\n upstream app {\n  # canary:begin app\n  server a:1;\n"
                    "  # canary:end app\n }\n}\n")
    router = nginx.from_config(nginx.Config.model_validate({
        "config": str(conf), "upstream": "app", "stable": "a:1", "canary": "c:1",
        "sticky": {"cookie": "aff"}}))
    with pytest.raises(RouterError, match="routes"):
        router.get_routes()
