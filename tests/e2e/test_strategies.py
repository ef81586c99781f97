"""Blue-green and A/B match stages end to end: `canary deploy` as a process, real HAProxy
(matches through an ACL file driven by the runtime API), real demo apps, real
Prometheus, a local Slack receiver. Traffic is real: a main load without the header and
a small load that carries it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.haproxy import runtime_command, start_haproxy
from lab.load import Load
from lab.proc import Server
from lab.slack_receiver import SlackReceiver
from tests.e2e.conftest import Lab, Stack, run_canary, write_policy

pytestmark = pytest.mark.servers


@dataclass
class Rig:
    stack: Stack
    tagged: Load  # requests carrying the match header
    acl: str


@pytest.fixture()
def rig_for(lab: Lab, tmp_path: Path) -> Iterator[object]:
    made: list[Rig] = []

    def make(canary_version: str, *, header: str) -> Rig:
        servers = {"stable-1": int(lab.apps["1.0.0"].info["port"]),
                   "canary-1": int(lab.apps[canary_version].info["port"])}
        hap: Server = start_haproxy(tmp_path / "haproxy", backend="checkout", servers=servers,
                                    canary=["canary-1"], match_header=header)
        url = f"http://127.0.0.1:{hap.info['port']}/"
        stack = Stack(haproxy=hap, load=Load(url, rps=30).start(),
                      slack=SlackReceiver(echo=None).start(), dir=tmp_path,
                      store=f"sqlite:///{tmp_path}/state.db")
        rig = Rig(stack=stack, tagged=Load(url, rps=5, headers={header: "1"}).start(),
                  acl=str(hap.info["match_acl"]))
        made.append(rig)
        return rig

    yield make
    for r in made:
        r.tagged.stop()
        r.stack.load.stop()
        r.stack.slack.stop()
        r.stack.haproxy.stop()


def rollout(rig: Rig, *, version: str, policy: Path, body: str, header: str) -> Path:
    f = rig.stack.dir / "rollout.yaml"
    f.write_text(f"""\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "{version}"
  stableVersion: "1.0.0"
  router:
    type: haproxy
    socket: {rig.stack.haproxy.info['socket']}
    backend: checkout
    stable: stable-1
    canary: canary-1
    match: {{header: {header}, value: "1"}}
    matchAcl: {rig.acl}
{body}
  analysis:
    policy: {policy}
  notifications:
    - type: slack
      webhookUrl: ${{SLACK_WEBHOOK_URL}}
""")
    return f


def events(rig: Rig) -> list[dict[str, object]]:
    out = run_canary(rig.stack, "history", "checkout", "-o", "json")
    assert out.returncode == 0, out.stderr
    found: list[dict[str, object]] = json.loads(out.stdout)[0]["events"]
    return found


def acl_entries(rig: Rig) -> list[str]:
    reply = runtime_command(str(rig.stack.haproxy.info["socket"]), f"show acl {rig.acl}")
    return [line for line in reply.splitlines() if line.strip()]


def test_blue_green_preview_switch_then_a_failed_post_promotion_check_switches_back(
        rig_for: object, lab: Lab) -> None:
    assert callable(rig_for)
    header = "X-Canary-Preview"
    rig: Rig = rig_for("4.0.0", header=header)
    policy = write_policy(rig.stack.dir / "policy.yaml", lab.prometheus_url)
    f = rollout(rig, version="4.0.0", policy=policy, header=header,
                body="  strategy: blueGreen\n  blueGreen: {preview: 6s, rollbackWindow: 40s}")
    result = run_canary(rig.stack, "deploy", "-f", str(f), "--no-preflight", timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    # back on the old version in one step, the preview route gone
    assert rig.stack.all_on("stable-1") and acl_entries(rig) == []
    asked = [e["data"] for e in events(rig) if e["kind"] == "stage-reached"]
    assert [a["weight"] for a in asked] == [0, 100]  # preview, then one switch
    routers = [str(e["message"]) for e in events(rig) if e["kind"] == "router"]
    weights = [m for m in routers if m.startswith("asked")]
    assert [w.split()[1] for w in weights] == ["0%", "100%", "0%"], weights
    assert any("match on" in m for m in routers) and any("match off" in m for m in routers)
    # the preview saw the version while it was still healthy: the failure came after
    checks = [e for e in events(rig) if e["kind"] == "analysis"]
    assert checks and any(e["data"]["outcome"] == "passed" for e in checks)
    alerts = rig.stack.slack.payloads
    assert len(alerts) == 1, alerts
    assert "rolled back" in json.dumps(alerts[0]).lower() and "4.0.0" in json.dumps(alerts[0])


def test_match_stage_then_weights_promotes_and_ends_the_match(rig_for: object,
                                                               lab: Lab) -> None:
    assert callable(rig_for)
    header = "X-Canary"
    rig: Rig = rig_for("2.0.0", header=header)
    policy = write_policy(rig.stack.dir / "policy.yaml", lab.prometheus_url)
    f = rollout(rig, version="2.0.0", policy=policy, header=header,
                body="  pause: 4s\n  stages: [{match: true, pause: 6s}, 50, 100]")
    result = run_canary(rig.stack, "deploy", "-f", str(f), "--no-preflight", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert rig.stack.all_on("canary-1") and acl_entries(rig) == []
    reached = [e["data"]["weight"] for e in events(rig) if e["kind"] == "stage-reached"]
    assert reached == [0, 50, 100]
