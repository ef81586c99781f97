"""Rollout files for blue-green, match (A/B) and mirror stages: what they become, and
what is refused (with the line, naming the router and the feature) before anything moves."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.config.spec import parse_rollout_text
from canary.errors import InputError
from canary.specs import Stage

HAPROXY = """\
  router:
    type: haproxy
    socket: /run/haproxy.sock
    backend: app
    stable: s1
    canary: c1
"""
NGINX = """\
  router:
    type: nginx
    config: /etc/nginx/nginx.conf
    upstream: app
    stable: 10.0.0.1:80
    canary: 10.0.0.2:80
"""


def rollout(router: str, body: str) -> str:
    return ("apiVersion: canary/v1\nkind: Rollout\nmetadata: {name: app}\nspec:\n"
            "  service: app\n  version: '2'\n  stableVersion: '1'\n" + router + body)


def test_mirror_and_match_stages_come_first_with_weight_zero() -> None:
    spec = parse_rollout_text(rollout(NGINX.replace("    canary: 10.0.0.2:80\n",
                                                    "    canary: 10.0.0.2:80\n"
                                                    "    match: {header: X-Beta, value: beta}\n"),
                                      "  pause: 1m\n  stages:\n    - {match: true, pause: 1h}\n"
                                      "    - {mirror: 50, pause: 5m}\n    - 25\n    - 100\n"),
                              file="r.yaml")
    assert spec.stages == (Stage(0, 3600, match=True), Stage(0, 300, mirror=50),
                           Stage(25, 60), Stage(100, 60))


def test_a_match_given_in_the_stage_becomes_the_routers() -> None:
    spec = parse_rollout_text(rollout(NGINX, "  stages:\n    - match: {cookie: beta, value: '1'}\n"
                                             "      pause: 10m\n    - 100\n"), file="r.yaml")
    assert spec.router.options["match"] == {"cookie": "beta", "value": "1"}
    assert spec.stages[0] == Stage(0, 600, match=True)


def test_blue_green_is_a_preview_then_one_switch() -> None:
    spec = parse_rollout_text(rollout(NGINX, "  strategy: blueGreen\n  blueGreen:\n"
                                             "    preview: 5m\n    rollbackWindow: 15m\n"),
                              file="r.yaml")
    assert spec.stages == (Stage(0, 300, match=True), Stage(100, 900))
    assert spec.router.options["match"] == {"header": "X-Canary-Preview", "value": "1"}


@pytest.mark.parametrize(("router", "body", "line", "field", "words"), [
    (HAPROXY, "  stages:\n    - {mirror: 50, pause: 5m}\n    - 100\n", 15,
     "spec.stages[0].mirror", "'haproxy' cannot do traffic mirroring"),
    (NGINX, "  stages:\n    - {match: true}\n    - 100\n", 15, "spec.stages[0].match",
     "needs spec.router.match"),
    (NGINX, "  stages:\n    - 25\n    - {mirror: 10}\n", 16, "spec.stages[1]",
     "come before the weighted"),
    (NGINX, "  stages:\n    - {weight: 5, mirror: 10}\n", 15, "spec.stages[0]",
     "exactly one of weight"),
    (NGINX, "  strategy: blueGreen\n  stages: [5, 100]\n", 15, "spec.stages", "no stages"),
    (NGINX, "  blueGreen: {preview: 1m}\n", 14, "spec.blueGreen", "strategy: blueGreen"),
    (HAPROXY, "  strategy: blueGreen\n", 8, "spec.router", "matchAcl"),
    (HAPROXY.replace("canary: c1\n", "canary: c1\n    sticky: {cookie: 'a b'}\n"), "",
     14, "spec.router.sticky", "cookie name"),
])
def test_refused_with_line_and_field(router: str, body: str, line: int, field: str,
                                     words: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_rollout_text(rollout(router, body), file="r.yaml")
    err = caught.value
    assert (err.line, err.field) == (line, field), str(err)
    assert words in str(err)


def test_validate_names_the_router_and_the_feature(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(rollout(HAPROXY.replace("type: haproxy", "type: command\n    setWeights: [x]\n"
                                         "    getWeights: [y]").replace(
        "    socket: /run/haproxy.sock\n    backend: app\n    stable: s1\n    canary: c1\n", ""),
                         "  stages:\n    - {mirror: 20, pause: 1m}\n    - 100\n"))
    result = CliRunner().invoke(app, ["validate", str(f)])
    assert result.exit_code == 2
    assert "'command' cannot do traffic mirroring" in result.output
    assert "r.yaml:12" in result.output or "r.yaml:13" in result.output, result.output
