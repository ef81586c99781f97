"""HAProxy adapter beyond the contract: the percent <-> weight mapping, the order of writes,
the runtime API's failure modes, and the TCP form of the stats socket."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from canary.errors import RouterError
from canary.model import Weights
from canary.routers import haproxy
from canary.routers.haproxy import HAProxyRouter, split_from, weights_for
from lab.haproxy import runtime_command
from lab.proc import Server, free_port

from .conftest import STABLE

# --- mapping -------------------------------------------------------------------------

SHAPES = [(["s1"], ["c1"]), (["s1", "s2"], ["c1"]), (["s1"], ["c1", "c2", "c3"]),
          ([f"s{i}" for i in range(7)], [f"c{i}" for i in range(5)])]


@pytest.mark.parametrize(("stable", "canary"), SHAPES)
def test_every_percentage_round_trips_exactly(stable: list[str], canary: list[str]) -> None:
    for pct in range(101):
        w = weights_for(Weights(canary=pct), stable=stable, canary=canary)
        assert set(w) == {*stable, *canary}
        assert all(0 <= v <= 200 for v in w.values())
        assert sum(w[n] for n in canary) == 2 * pct
        assert sum(w[n] for n in stable) == 2 * (100 - pct)
        for side in (stable, canary):  # spread evenly: servers differ by at most one
            assert max(w[n] for n in side) - min(w[n] for n in side) <= 1
        assert split_from(w, stable=stable, canary=canary) == Weights(canary=pct)


def test_documented_examples() -> None:
    assert weights_for(Weights(canary=5), stable=["s1", "s2"], canary=["c1"]) == \
        {"s1": 95, "s2": 95, "c1": 10}
    assert weights_for(Weights(canary=25), stable=["s1"], canary=["c1", "c2", "c3"]) == \
        {"s1": 150, "c1": 17, "c2": 17, "c3": 16}


@pytest.mark.parametrize(("current", "expected"), [
    ({"s": 256, "c": 0}, 0),
    ({"s": 255, "c": 1}, 1),     # 0.4% is still traffic on the canary: never reported as 0
    ({"s": 1, "c": 255}, 99),    # likewise a stable side that still gets something
    ({"s": 0, "c": 7}, 100),
    ({"s": 3, "c": 1}, 25),
    ({"s": 199, "c": 1}, 1),
    ({"s": 7, "c": 1}, 13),      # 12.5 rounds half up
    ({"s": 2, "c": 1}, 33),
])
def test_hand_set_weights_read_back_as_the_nearest_percentage(current: dict[str, int],
                                                              expected: int) -> None:
    assert split_from(current, stable=["s"], canary=["c"]) == Weights(canary=expected)


def test_no_weight_anywhere_is_no_split() -> None:
    assert split_from({"s": 0, "c": 0}, stable=["s"], canary=["c"]) is None


# --- config --------------------------------------------------------------------------

def test_config_takes_one_name_or_a_list() -> None:
    c = haproxy.Config.model_validate({"socket": "/s", "backend": "b", "stable": "a",
                                       "canary": ["c", "d"], "timeout": "500ms"})
    assert (c.stable, c.canary, c.timeout) == (["a"], ["c", "d"], 0.5)


@pytest.mark.parametrize(("options", "complaint"), [
    ({"backend": "b", "stable": "a", "canary": "c"}, "exactly one of socket"),
    ({"socket": "/s", "address": "127.0.0.1:1", "backend": "b", "stable": "a", "canary": "c"},
     "exactly one of socket"),
    ({"address": "127.0.0.1", "backend": "b", "stable": "a", "canary": "c"}, "host:port"),
    ({"socket": "/s", "backend": "b;shutdown", "stable": "a", "canary": "c"}, "backend name"),
    ({"socket": "/s", "backend": "b", "stable": "a b", "canary": "c"}, "server name"),
    ({"socket": "/s", "backend": "b", "stable": ["a", "c"], "canary": "c"}, "both sides"),
    ({"socket": "/s", "backend": "b", "stable": [], "canary": "c"}, "at least 1"),
    ({"socket": "/s", "backend": "b", "stable": "a", "canary": "c", "weight": 3}, "weight"),
])
def test_config_rejects(options: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        haproxy.Config.model_validate(options)


# --- the order of writes, on a recording runtime API ---------------------------------

class FakeRuntimeApi:
    """Answers get/set weight like HAProxy, records commands, can refuse one server."""

    def __init__(self, path: str, weights: dict[str, int], *, level: str = "admin",
                 refuse: str | None = None) -> None:
        self.weights, self.level, self.refuse = weights, level, refuse
        self.log: list[str] = []
        self.totals: list[int] = []  # backend weight after every command
        api = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(api.answer(self.rfile.readline().decode().strip()).encode())

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, command: str) -> str:
        self.log.append(command)
        words = command.split()
        if command == "show cli level":
            return f"{self.level}\n\n"
        name = words[2].split("/")[1] if len(words) > 2 else ""
        if name not in self.weights:
            return "No such server.\n\n"
        if words[0] == "get":
            return f"{self.weights[name]} (initial 0)\n\n"
        if name == self.refuse:
            return "Backend is using a static LB algorithm and only accepts weights '0%' " \
                   "and '100%'.\n\n"
        self.weights[name] = int(words[3])
        self.totals.append(sum(self.weights.values()))
        return "\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[Callable[..., tuple[FakeRuntimeApi, HAProxyRouter]]]:
    made: list[FakeRuntimeApi] = []

    def make(weights: dict[str, int], **kw: str) -> tuple[FakeRuntimeApi, HAProxyRouter]:
        path = str(tmp_path / f"api{len(made)}.sock")
        api = FakeRuntimeApi(path, weights, **kw)
        made.append(api)
        return api, HAProxyRouter(backend="app", stable=("s1", "s2"), canary=("c1",),
                                  socket_path=path)

    yield make
    for api in made:
        api.close()


@pytest.mark.parametrize(("start", "target"), [(0, 100), (100, 0), (5, 25), (50, 5), (100, 60)])
def test_raises_before_lowering_so_the_backend_is_never_empty(
        fake_api: Callable[..., tuple[FakeRuntimeApi, HAProxyRouter]], start: int,
        target: int) -> None:
    before = weights_for(Weights(canary=start), stable=["s1", "s2"], canary=["c1"])
    api, router = fake_api(dict(before))
    router.set_weights(Weights(canary=target))
    sets = [c.split() for c in api.log if c.startswith("set")]  # set weight app/NAME N
    deltas = [int(w[3]) - before[w[2].removeprefix("app/")] for w in sets]
    assert deltas == sorted(deltas, reverse=True)  # every raise before any lowering
    assert all(total > 0 for total in api.totals)
    assert router.get_weights() == Weights(canary=target)


def test_unknown_server_changes_nothing(
        fake_api: Callable[..., tuple[FakeRuntimeApi, HAProxyRouter]]) -> None:
    api, router = fake_api({"s1": 100, "s2": 100})  # no c1 in this backend
    with pytest.raises(RouterError, match="No such server"):
        router.set_weights(Weights(canary=50))
    assert not [c for c in api.log if c.startswith("set")]


def test_refused_write_is_reported_with_haproxys_words(
        fake_api: Callable[..., tuple[FakeRuntimeApi, HAProxyRouter]]) -> None:
    _, router = fake_api({"s1": 100, "s2": 100, "c1": 0}, refuse="c1")
    with pytest.raises(RouterError, match=r"refused `set weight app/c1 50`: Backend is using"):
        router.set_weights(Weights(canary=25))


def test_ensure_needs_admin_level(
        fake_api: Callable[..., tuple[FakeRuntimeApi, HAProxyRouter]]) -> None:
    _, router = fake_api({"s1": 100, "s2": 100, "c1": 0}, level="operator")
    with pytest.raises(RouterError, match="level admin"):
        router.ensure()


# --- failure modes of the connection -------------------------------------------------

def test_missing_socket_names_the_path_and_what_to_check(tmp_path: Path) -> None:
    router = HAProxyRouter(backend="app", stable=("s1",), canary=("c1",),
                           socket_path=str(tmp_path / "gone.sock"))
    with pytest.raises(RouterError, match=r"gone\.sock.*stats socket") as caught:
        router.get_weights()
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_refused_tcp_connection_is_a_router_error() -> None:
    router = HAProxyRouter(backend="app", stable=("s1",), canary=("c1",),
                           address=("127.0.0.1", free_port()))
    with pytest.raises(RouterError, match="cannot reach"):
        router.set_weights(Weights(canary=5))


def test_silent_peer_times_out_within_the_timeout(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(path)
        silent.listen(8)  # accepts into the backlog, never answers
        router = HAProxyRouter(backend="app", stable=("s1",), canary=("c1",),
                               socket_path=path, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(RouterError, match="did not answer"):
            router.get_weights()
        assert time.monotonic() - started < 1.5


# --- the real HAProxy ----------------------------------------------------------------

@pytest.mark.servers
def test_tcp_stats_socket_drives_the_same_backend(haproxy_server: Server) -> None:
    router = haproxy.from_config(haproxy.Config(
        address=f"127.0.0.1:{haproxy_server.info['admin_port']}", backend="app",
        stable=list(STABLE), canary=["canary-1"]))
    router.ensure()
    router.set_weights(Weights(canary=30))
    reply = runtime_command(str(haproxy_server.info["socket"]), "get weight app/canary-1")
    assert reply.split()[0] == "60"
    assert router.get_weights() == Weights(canary=30)
    router.set_weights(Weights(canary=0))


@pytest.mark.servers
def test_unknown_backend_fails_ensure(haproxy_server: Server) -> None:
    router = HAProxyRouter(backend="nope", stable=STABLE, canary=("canary-1",),
                           socket_path=str(haproxy_server.info["socket"]))
    with pytest.raises(RouterError, match="No such backend"):
        router.ensure()


@pytest.mark.servers
def test_all_servers_at_zero_is_an_error_not_a_split(haproxy_server: Server) -> None:
    sock = str(haproxy_server.info["socket"])
    router = HAProxyRouter(backend="app", stable=STABLE, canary=("canary-1",), socket_path=sock)
    for name in (*STABLE, "canary-1"):
        runtime_command(sock, f"set weight app/{name} 0")
    try:
        with pytest.raises(RouterError, match="serves no traffic"):
            router.get_weights()
        # still repairable: set_weights does not depend on reading a split
        router.set_weights(Weights(canary=0))
        assert router.get_weights() == Weights(canary=0)
    finally:
        router.set_weights(Weights(canary=0))


def test_deploy_refuses_a_server_the_backend_does_not_have(haproxy_server: Server,
                                                           tmp_path: Path) -> None:
    """Router.ensure() runs before anything is stored: a typo is exit 2, not a rollback."""
    from typer.testing import CliRunner

    from canary.cli import app
    from canary.store.sqlite import SQLiteStore

    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: canary/v1\nkind: AnalysisPolicy\nmetadata: {name: p}\n"
                      "spec:\n  prometheus: {url: 'http://127.0.0.1:9'}\n  metrics: []\n")
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(f"""\
apiVersion: canary/v1
kind: Rollout
metadata: {{name: typo}}
spec:
  service: app
  version: "2"
  stableVersion: "1"
  router:
    type: haproxy
    socket: {haproxy_server.info['socket']}
    backend: app
    stable: [stable-1, stable-2]
    canary: canary-one
  analysis: {{policy: {policy}}}
""")
    store = f"sqlite:///{tmp_path}/state.db"
    result = CliRunner().invoke(app, ["deploy", "-f", str(rollout), "--store", store])
    assert result.exit_code == 2, result.output
    assert "canary-one" in result.output and "router is not usable" in result.output
    assert SQLiteStore(f"{tmp_path}/state.db").history("typo") == []  # nothing stored
