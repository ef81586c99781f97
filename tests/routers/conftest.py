"""Real backends for the router contract suite, once per session; one harness per adapter.

HAProxy and nginx run as real processes on free loopback ports in front of three named
backends (two stable, one canary). Each harness fixture first puts its backend back to
all-stable by hand, so every test starts from the same state whatever the last one did.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from canary.model import Weights
from canary.routers import command, haproxy, http, nginx
from canary.routers.base import Router
from canary.routers.null import NullRouter
from lab import nginx as nginx_lab
from lab.backends import Backend, count_responses, start_backends
from lab.haproxy import runtime_command, start_haproxy
from lab.proc import Server, free_port

from .harness import HARNESSES, RouterHarness, harness_id, sides
from .weights_api import WeightsApi

STABLE = ("stable-1", "stable-2")
CANARY = ("canary-1",)
WEIGHTS_CMD = str(Path(__file__).with_name("weights_cmd.py"))


@pytest.fixture(params=HARNESSES, ids=harness_id)
def harness(request: pytest.FixtureRequest) -> RouterHarness:
    value: RouterHarness = request.getfixturevalue(request.param)
    return value


# --- session servers ----------------------------------------------------------------

@pytest.fixture(scope="session")
def backends() -> Iterator[dict[str, Backend]]:
    running = start_backends((*STABLE, *CANARY))
    yield running
    for b in running.values():
        b.stop()


@pytest.fixture(scope="session")
def haproxy_server(tmp_path_factory: pytest.TempPathFactory,
                   backends: dict[str, Backend]) -> Iterator[Server]:
    server = start_haproxy(tmp_path_factory.mktemp("haproxy"), backend="app",
                           servers={n: b.port for n, b in backends.items()}, canary=CANARY)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory: pytest.TempPathFactory,
                 backends: dict[str, Backend]) -> Iterator[Server]:
    server = nginx_lab.start_nginx(
        tmp_path_factory.mktemp("nginx"), upstream="app",
        stable=[backends[n].address for n in STABLE],
        canary=[backends[n].address for n in CANARY])
    server.info["initial"] = Path(str(server.info["config"])).read_text()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def weights_api() -> Iterator[WeightsApi]:
    api = WeightsApi().start()
    yield api
    api.stop()


# --- harnesses ----------------------------------------------------------------------

@pytest.fixture
def null_harness() -> RouterHarness:
    return RouterHarness(router=NullRouter())


@pytest.fixture
def command_harness(tmp_path: Path) -> RouterHarness:
    state = tmp_path / "split.json"
    state.write_text(json.dumps({"stable": 100, "canary": 0}))

    def config(path: Path) -> command.Config:
        return command.Config.model_validate({
            "setCommand": [sys.executable, WEIGHTS_CMD, str(path), "set", "{stable}",
                           "{canary}"],
            "getCommand": [sys.executable, WEIGHTS_CMD, str(path), "get"],
            "timeout": "10s"})

    def by_hand(w: Weights) -> None:
        state.write_text(json.dumps({"stable": w.stable, "canary": w.canary}))

    @contextmanager
    def refusing() -> Iterator[Router]:
        flag = Path(f"{state}.refuse")
        flag.touch()
        try:
            yield command.from_config(config(state))
        finally:
            flag.unlink()

    return RouterHarness(router=command.from_config(config(state)), set_by_hand=by_hand,
                         refusing=refusing,
                         broken=lambda: command.from_config(
                             config(tmp_path / "no-dir" / "split.json")))


@pytest.fixture
def http_harness(weights_api: WeightsApi) -> Iterator[RouterHarness]:
    weights_api.split, weights_api.fail, weights_api.token = {"stable": 100, "canary": 0}, \
        False, None
    weights_api.body = None

    def by_hand(w: Weights) -> None:
        weights_api.split = {"stable": w.stable, "canary": w.canary}

    @contextmanager
    def refusing() -> Iterator[Router]:
        weights_api.fail = True
        try:
            yield router
        finally:
            weights_api.fail = False

    router = http.from_config(http.Config.model_validate({"url": weights_api.url}))
    closed = f"http://127.0.0.1:{free_port()}/weights"
    yield RouterHarness(router=router, set_by_hand=by_hand, refusing=refusing,
                        broken=lambda: http.from_config(
                            http.Config.model_validate({"url": closed, "timeout": 2})))


def haproxy_router(server: Server, *, canary: tuple[str, ...] = CANARY,
                   socket: str | None = None) -> haproxy.HAProxyRouter:
    return haproxy.from_config(haproxy.Config(
        socket=socket or str(server.info["socket"]), backend="app", stable=list(STABLE),
        canary=list(canary)))


def haproxy_by_hand(server: Server, w: Weights) -> None:
    """Uneven on purpose (3:1 between the stable servers), unlike the adapter's spread."""
    stable_total = 2 * w.stable
    hand = {"stable-1": stable_total * 3 // 4, "stable-2": stable_total - stable_total * 3 // 4,
            "canary-1": 2 * w.canary}
    for name, weight in hand.items():
        reply = runtime_command(str(server.info["socket"]), f"set weight app/{name} {weight}")
        assert not reply.strip(), reply


@pytest.fixture
def haproxy_harness(haproxy_server: Server, tmp_path: Path) -> RouterHarness:
    haproxy_by_hand(haproxy_server, Weights(canary=0))

    @contextmanager
    def refusing() -> Iterator[Router]:  # a canary server the backend does not have
        yield haproxy_router(haproxy_server, canary=("canary-1", "canary-9"))

    url = f"http://127.0.0.1:{haproxy_server.info['port']}/"
    return RouterHarness(
        router=haproxy_router(haproxy_server),
        set_by_hand=lambda w: haproxy_by_hand(haproxy_server, w),
        refusing=refusing,
        broken=lambda: haproxy_router(haproxy_server, socket=str(tmp_path / "no.sock")),
        apply=haproxy_router(haproxy_server).set_weights,
        send=lambda n: sides(count_responses(url, requests=n)))


def nginx_router(server: Server, backends: dict[str, Backend], *,
                 config: str | None = None) -> nginx.NginxRouter:
    return nginx.from_config(nginx.Config.model_validate({
        "config": config or str(server.info["config"]), "upstream": "app",
        "stable": [backends[n].address for n in STABLE],
        "canary": [backends[n].address for n in CANARY],
        "prefix": server.info["prefix"], "errorLog": server.info["error_log"],
        "nginxBinary": nginx_lab.NGINX, "timeout": "10s"}))


def nginx_write_and_reload(server: Server, text: str) -> None:
    """Replace the whole config by hand and reload; returns once new workers serve it."""
    path = Path(str(server.info["config"]))
    if path.read_text() == text:
        return
    path.write_text(text)
    before = nginx_lab.workers(server)
    nginx_lab.reload(server)
    nginx_lab.wait_for_reload(server, before)


def nginx_by_hand(server: Server, backends: dict[str, Backend], w: Weights) -> None:
    """Weights written unreduced and uneven (3:1 between the stable servers)."""
    s1, s2 = 3 * w.stable, w.stable
    lines = [f"server {backends['stable-1'].address} {'weight=' + str(s1) if s1 else 'down'};",
             f"server {backends['stable-2'].address} {'weight=' + str(s2) if s2 else 'down'};",
             f"server {backends['canary-1'].address} "
             f"{'weight=' + str(4 * w.canary) if w.canary else 'down'};"]
    initial = str(server.info["initial"])
    begin, end = initial.index("# canary:begin app\n"), initial.index("        # canary:end")
    head = initial[:begin + len("# canary:begin app\n")]
    nginx_write_and_reload(server, head + "".join(f"        {x}\n" for x in lines)
                           + initial[end:])


@pytest.fixture
def nginx_harness(nginx_server: Server, backends: dict[str, Backend]) -> RouterHarness:
    nginx_write_and_reload(nginx_server, str(nginx_server.info["initial"]))
    router = nginx_router(nginx_server, backends)
    path = Path(str(nginx_server.info["config"]))

    @contextmanager
    def refusing() -> Iterator[Router]:  # someone broke the file outside the managed block
        good = path.read_text()
        path.write_text(good.replace("    access_log off;\n",
                                     "    access_log off;\n    no_such_directive on;\n"))
        try:
            yield router
        finally:
            path.write_text(good)

    def apply(w: Weights) -> None:
        before = nginx_lab.workers(nginx_server)
        changed = router.get_weights() != w
        router.set_weights(w)
        if changed:
            nginx_lab.wait_for_reload(nginx_server, before)

    url = f"http://127.0.0.1:{nginx_server.info['port']}/"
    return RouterHarness(
        router=router,
        set_by_hand=lambda w: nginx_by_hand(nginx_server, backends, w),
        refusing=refusing,
        broken=lambda: nginx_router(nginx_server, backends,
                                    config=str(path.with_name("missing.conf"))),
        apply=apply,
        send=lambda n: sides(count_responses(url, requests=n)))
