"""nginx adapter beyond the contract: rendering, parsing the managed block, and what the
config file looks like after changes that succeed, fail the test, or fail the reload."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from canary.errors import RouterError
from canary.model import Weights
from canary.routers import nginx
from canary.routers.nginx import NginxRouter
from canary.routers.nginx_blocks import render_servers, split_from
from lab import nginx as nginx_lab
from lab.backends import Backend
from lab.proc import Server

from .conftest import nginx_router, nginx_write_and_reload

# --- rendering and parsing -----------------------------------------------------------

@pytest.mark.parametrize(("canary", "lines"), [
    (5, ["server a:1 weight=19;", "server c:1 weight=1;"]),
    (25, ["server a:1 weight=3;", "server c:1 weight=1;"]),
    (50, ["server a:1 weight=1;", "server c:1 weight=1;"]),
    (0, ["server a:1 weight=1;", "server c:1 down;"]),  # weight=0 is invalid in nginx
    (100, ["server a:1 down;", "server c:1 weight=1;"]),
])
def test_renders_reduced_weights_and_down(canary: int, lines: list[str]) -> None:
    assert render_servers(Weights(canary=canary), stable=["a:1"], canary=["c:1"]) == lines


@pytest.mark.parametrize(("stable", "canary"), [(["a:1"], ["c:1"]), (["a:1", "b:1"], ["c:1"]),
                                                (["a:1"], ["c:1", "d:1", "e:1"])])
def test_every_percentage_round_trips_exactly(stable: list[str], canary: list[str]) -> None:
    for pct in range(101):
        block = render_servers(Weights(canary=pct), stable=stable, canary=canary, indent="  ")
        assert split_from(block, stable=stable, canary=canary, where="t") == Weights(canary=pct)


def test_parses_hand_written_lines() -> None:
    block = ["  # a comment\n", "\n", "  server a:1;  # default weight 1\n",
             "  server b:1 weight=2 max_fails=3;\n", "  server c:1 weight=5 backup;\n",
             "  server d:1 weight=1;\n"]
    # stable a (1) + b (2) = 3; canary d = 1; the backup server takes no share
    assert split_from(block, stable=["a:1", "b:1"], canary=["c:1", "d:1"],
                      where="t") == Weights(canary=25)


@pytest.mark.parametrize(("line", "complaint"), [
    ("server x:1 weight=1;", "neither a stable nor a canary"),
    ("keepalive 16;", "not a server line"),
    ("server a:1 weight=abc;", "bad 'weight=abc'"),
])
def test_rejects_what_it_cannot_classify(line: str, complaint: str) -> None:
    with pytest.raises(RouterError, match=complaint):
        split_from([line], stable=["a:1"], canary=["c:1"], where="t")


def test_all_down_is_no_split() -> None:
    assert split_from(["server a:1 down;", "server c:1 down;"], stable=["a:1"],
                      canary=["c:1"], where="t") is None


@pytest.mark.parametrize(("options", "complaint"), [
    ({"stable": "a:1; include /etc/passwd", "canary": "c:1"}, "host:port"),
    ({"stable": "a:1", "canary": "a:1"}, "both sides"),
    ({"stable": "a:1", "canary": "c:1", "upstream": "x y"}, "upstream name"),
    ({"stable": "a:1", "canary": "c:1", "errorlog": "e"}, "errorlog"),
])
def test_config_rejects(options: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        nginx.Config.model_validate({"config": "/c", "upstream": "app", **options})


def test_relative_config_is_taken_from_the_prefix() -> None:
    router = nginx.from_config(nginx.Config(config="conf/x.conf", upstream="app",
                                            stable=["a:1"], canary=["c:1"], prefix="/srv/n"))
    assert router.config == "/srv/n/conf/x.conf"


# --- markers -------------------------------------------------------------------------

CONF = """http {
    upstream app {
        keepalive 4;
        # canary:begin app
        server a:1;
        # canary:end app
    }
}
"""


@pytest.mark.parametrize(("text", "complaint"), [
    (CONF.replace("# canary:end app\n", ""), "found 1 begin and 0 end"),
    (CONF.replace("upstream app", "upstream other"), "not inside `upstream app"),
    (CONF + CONF, "found 2 begin and 2 end"),
])
def test_markers_must_sit_once_inside_the_named_upstream(tmp_path: Path, text: str,
                                                         complaint: str) -> None:
    path = tmp_path / "n.conf"
    path.write_text(text)
    router = NginxRouter(config=str(path), upstream="app", stable=("a:1",), canary=("c:1",))
    with pytest.raises(RouterError, match=complaint):
        router.get_weights()
    with pytest.raises(RouterError, match=complaint):
        router.set_weights(Weights(canary=5))
    assert path.read_text() == text


# --- against the real nginx ----------------------------------------------------------

@pytest.fixture
def fresh(nginx_server: Server, backends: dict[str, Backend]) -> NginxRouter:
    nginx_write_and_reload(nginx_server, str(nginx_server.info["initial"]))
    return nginx_router(nginx_server, backends)


def _outside_block(text: str) -> tuple[str, str]:
    head, rest = text.split("# canary:begin app\n")
    return head, rest[rest.index("# canary:end app"):]


@pytest.mark.servers
def test_only_the_managed_lines_change_and_the_mode_is_kept(fresh: NginxRouter) -> None:
    path = Path(fresh.config)
    os.chmod(path, 0o640)
    before = path.read_text()
    fresh.set_weights(Weights(canary=25))
    after = path.read_text()
    assert after != before
    assert _outside_block(after) == _outside_block(before)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".canary-")] == []


@pytest.mark.servers
def test_unchanged_split_does_not_reload(fresh: NginxRouter, nginx_server: Server) -> None:
    first = nginx_lab.workers(nginx_server)
    fresh.set_weights(Weights(canary=25))
    nginx_lab.wait_for_reload(nginx_server, first)
    workers = nginx_lab.workers(nginx_server)
    fresh.set_weights(Weights(canary=25))
    time.sleep(0.3)  # a reload would have replaced the worker by now (it takes ~25 ms)
    assert nginx_lab.workers(nginx_server) == workers


@pytest.mark.servers
def test_failed_test_leaves_the_file_as_it_was(fresh: NginxRouter) -> None:
    path = Path(fresh.config)
    good = path.read_text()
    broken = good.replace("    access_log off;\n",
                                      "    access_log off;\n    no_such_directive on;\n")
    path.write_text(broken)
    try:
        with pytest.raises(RouterError, match=r"-t.*failed.*no_such_directive"):
            fresh.set_weights(Weights(canary=50))
        assert path.read_text() == broken
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".canary-")] == []
    finally:
        path.write_text(good)


@pytest.mark.servers
def test_failed_reload_puts_the_previous_file_back(fresh: NginxRouter,
                                                   nginx_server: Server) -> None:
    pid_file = Path(str(nginx_server.info["prefix"])) / "nginx.pid"
    before = Path(fresh.config).read_text()
    pid = pid_file.read_text()
    pid_file.unlink()  # `nginx -s reload` cannot find the master now
    try:
        with pytest.raises(RouterError, match="reload.*failed"):
            fresh.set_weights(Weights(canary=50))
        assert Path(fresh.config).read_text() == before
    finally:
        pid_file.write_text(pid)
    assert fresh.get_weights() == Weights(canary=0)


@pytest.mark.servers
def test_missing_nginx_binary_is_a_router_error(fresh: NginxRouter) -> None:
    router = NginxRouter(config=fresh.config, upstream="app", stable=fresh.stable,
                         canary=fresh.canary, nginx_binary="/nonexistent/nginx")
    with pytest.raises(RouterError, match="nginxBinary"):
        router.set_weights(Weights(canary=5))
    assert fresh.get_weights() == Weights(canary=0)
