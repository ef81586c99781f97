"""Rollout and policy files: what is accepted, and how refusals name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.config.spec import load_policy, load_rollout, resolve_policy_path
from canary.errors import InputError

ROLLOUT = """\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "2.0.0"
  stableVersion: "1.0.0"
  router:
    type: haproxy
    socket: /run/haproxy/admin.sock
    backend: checkout
    stable: [stable-1, stable-2]
    canary: canary-1
  stages:
    - {weight: 5, pause: 30s}
    - {weight: 50}
  pause: 2m
  analysis:
    policy: policy.yaml
  notifications:
    - type: slack
      webhookUrl: ${SLACK_URL:-http://127.0.0.1:1/hook}
"""

POLICY = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: p
spec:
  prometheus:
    url: ${PROM:-http://127.0.0.1:9090}
  interval: 10s
  window: 30s
  metrics:
    - name: error-rate
      builtin: error-rate
      max: 0.01
"""


def write(tmp: Path, rollout: str = ROLLOUT, policy: str = POLICY) -> Path:
    (tmp / "policy.yaml").write_text(policy)
    f = tmp / "rollout.yaml"
    f.write_text(rollout)
    return f


def test_full_rollout_file_loads(tmp_path: Path) -> None:
    spec = load_rollout(str(write(tmp_path)))
    assert spec.name == "checkout" and spec.version == "2.0.0"
    assert [(s.weight, s.pause) for s in spec.stages] == [(5, 30.0), (50, 120.0)]
    assert spec.router.type == "haproxy" and spec.router.options["backend"] == "checkout"
    assert spec.notifications[0].url == "http://127.0.0.1:1/hook"
    assert "127.0.0.1:1" not in repr(spec.notifications[0])  # secrets stay out of repr


def test_defaults_and_short_stage_form(tmp_path: Path) -> None:
    text = ROLLOUT.replace("""  stages:
    - {weight: 5, pause: 30s}
    - {weight: 50}
  pause: 2m
""", "  stages: [10, 100]\n  pause: 45s\n")
    spec = load_rollout(str(write(tmp_path, text)), version="3.0.0")
    assert [(s.weight, s.pause) for s in spec.stages] == [(10, 45.0), (100, 45.0)]
    assert spec.version == "3.0.0"
    bare = ROLLOUT.split("  stages:")[0] + "  analysis:\n    policy: policy.yaml\n"
    spec2 = load_rollout(str(write(tmp_path, bare)))
    assert [(s.weight, s.pause) for s in spec2.stages] == [(5, 600), (25, 600), (50, 600),
                                                           (100, 600)]


@pytest.mark.parametrize(("change", "line", "field", "words"), [
    (("    backend: checkout\n", "    backend: checkout\n    colour: red\n"), 13,
     "spec.router.colour", "unknown field"),
    (("  service: checkout\n", "  service: checkout\n  servce: x\n"), 7, "spec.servce",
     "unknown field"),
    (("type: haproxy", "type: haproxyy"), 10, "spec.router.type", "unknown router type"),
    (("{weight: 50}", "{weight: 3}"), 17, "spec.stages[1]", "must go up"),
    (("pause: 30s", "pause: 30 seconds"), 16, "spec.stages[0].pause", "duration"),
    (("kind: Rollout", "kind: Rollot"), 2, "kind", "Rollout"),
    (("${SLACK_URL:-http://127.0.0.1:1/hook}", "${CANARY_TEST_UNSET_VAR}"), 23,
     "spec.notifications[0].webhookUrl", "CANARY_TEST_UNSET_VAR"),
    (('  version: "2.0.0"\n', ""), 5, "spec.version", "no version"),
    (("    stable: [stable-1, stable-2]\n", ""), 9, "spec.router.stable", "missing"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, change: tuple[str, str], line: int,
                                         field: str, words: str) -> None:
    assert change[0] in ROLLOUT
    f = write(tmp_path, ROLLOUT.replace(change[0], change[1]))
    with pytest.raises(InputError) as info:
        load_rollout(str(f))
    err = info.value
    assert (err.file, err.line, err.field) == (str(f), line, field)
    assert words in err.message
    assert str(err).startswith(f"{f}:{line}: {field}: ")


def test_bad_yaml_reports_line(tmp_path: Path) -> None:
    f = write(tmp_path, ROLLOUT.replace("  service: checkout", "  service: [unclosed"))
    with pytest.raises(InputError) as info:
        load_rollout(str(f))
    assert info.value.line is not None and "invalid YAML" in info.value.message


@pytest.mark.parametrize(("change", "field", "words"), [
    (("      max: 0.01\n", "      max: 0.01\n      min: 0.5\n"), "spec.metrics[0]", "above max"),
    (("builtin: error-rate", "builtin: eror-rate"), "spec.metrics[0].builtin", "expected"),
    (("      max: 0.01\n", ""), "spec.metrics[0]", "needs a threshold"),
    (("      builtin: error-rate\n", "      builtin: error-rate\n      query: up\n"),
     "spec.metrics[0]", "exactly one"),
    (("      max: 0.01\n", "      max: 0.01\n      failureLimit: -1\n"),
     "spec.metrics[0].failureLimit", "greater than or equal"),
    (("interval: 10s", "interval: often"), "spec.interval", "duration"),
])
def test_policy_errors(tmp_path: Path, change: tuple[str, str], field: str, words: str) -> None:
    assert change[0] in POLICY
    (tmp_path / "p.yaml").write_text(POLICY.replace(change[0], change[1]))
    with pytest.raises(InputError) as info:
        load_policy(str(tmp_path / "p.yaml"))
    assert info.value.field == field and words in info.value.message
    assert info.value.line is not None


def test_shipped_policies_resolve_by_name_and_load(tmp_path: Path) -> None:
    path = resolve_policy_path("default", base_dir=str(tmp_path))
    policy = load_policy(path)
    assert policy.name == "default" and policy.metrics
    with pytest.raises(InputError, match="not found"):
        resolve_policy_path("no-such-policy", base_dir=str(tmp_path))


runner = CliRunner()


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path)
    ok = runner.invoke(app, ["validate", str(good), str(tmp_path / "policy.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "valid Rollout" in ok.output and "valid AnalysisPolicy" in ok.output
    (tmp_path / "bad.yaml").write_text(ROLLOUT.replace("backend: checkout", "backnd: checkout"))
    bad = runner.invoke(app, ["validate", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2
    assert "spec.router.backnd: unknown field" in bad.output
    assert "Traceback" not in bad.output


def test_deploy_with_invalid_file_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(ROLLOUT.replace("stages:", "stagez:"))
    store = f"sqlite:///{tmp_path}/state.db"
    res = runner.invoke(app, ["deploy", "-f", str(tmp_path / "bad.yaml"), "--store", store])
    assert res.exit_code == 2 and "spec.stagez" in res.output
    st = runner.invoke(app, ["status", "checkout", "--store", store])
    assert st.exit_code == 2 and "no rollout named" in st.output
