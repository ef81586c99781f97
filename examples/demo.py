"""The demo: two real rollouts on real servers, start to finish, in about a minute.

Starts three versions of a demo service (1.0.0; 2.0.0 healthy; 3.0.0 answering 40% errors),
HAProxy in front of them, Prometheus scraping them every second, a load generator, and a
local Slack-compatible receiver that prints what it gets. Then:

1. `canary deploy` of 2.0.0 over 1.0.0: 5/25/50/100%, checked at each stage -> promoted;
2. `canary deploy` of 3.0.0 over 2.0.0 (the store knows 2.0.0 is now stable): the
   sequential judge sees the errors within seconds -> traffic back on 2.0.0, and the
   rollback line and Slack alert say both error rates, the requests and the evidence.

Run it with `./scripts/demo` (installs what is missing first).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.app import start_app
from lab.haproxy import start_haproxy
from lab.load import Load
from lab.proc import Server
from lab.prometheus import start_prometheus, wait_for_targets_up
from lab.slack_receiver import SlackReceiver

REPO = Path(__file__).resolve().parents[1]

POLICY = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: demo
spec:
  prometheus:
    url: ${PROMETHEUS_URL}
  interval: 3s
  window: 10s
  sequential:             # canary vs stable; its lines say rates, requests and evidence
    alpha: 0.02
    warmup: 2s
"""

ROLLOUT = """\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "{version}"{stable}
  router:
    type: haproxy
    socket: {socket}
    backend: checkout
    stable: {stable_server}
    canary: {canary_server}
  stages: [5, 25, 50, 100]
  pause: 6s
  analysis:
    policy: policy.yaml
  notifications:
    - type: slack
      webhookUrl: ${{SLACK_WEBHOOK_URL}}
"""


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="canary-demo-"))
    servers: list[Server] = []
    try:
        banner("starting the lab: 3 app versions, Prometheus, HAProxy, Slack receiver")
        apps = {v: start_app(work, version=v, latency=0.003, error_rate=e)
                for v, e in (("1.0.0", 0.0), ("2.0.0", 0.0), ("3.0.0", 0.4))}
        servers.extend(apps.values())
        prom = start_prometheus(work / "prometheus",
                                targets=[f"127.0.0.1:{a.info['port']}" for a in apps.values()])
        servers.append(prom)
        hap = start_haproxy(work / "haproxy", backend="checkout",
                            servers={f"v{v[0]}": int(a.info["port"]) for v, a in apps.items()},
                            canary=["v2", "v3"])
        servers.append(hap)
        slack = SlackReceiver().start()
        print(f"prometheus {prom.info['url']}  haproxy 127.0.0.1:{hap.info['port']}  "
              f"slack {slack.url('')}", flush=True)
        print("waiting for Prometheus's first scrape ...", flush=True)
        wait_for_targets_up(str(prom.info["url"]), len(apps), timeout=60)
        load = Load(f"http://127.0.0.1:{hap.info['port']}/", rps=60).start()
        (work / "policy.yaml").write_text(POLICY)
        env = {**os.environ, "PROMETHEUS_URL": str(prom.info["url"]),
               "SLACK_WEBHOOK_URL": slack.url(), "CANARY_STORE": f"sqlite:///{work}/state.db",
               "PYTHONPATH": str(REPO)}
        codes = []
        for version, stable, stable_server, canary_server in (
                ("2.0.0", '\n  stableVersion: "1.0.0"', "v1", "v2"),
                ("3.0.0", "", "v2", "v3")):
            f = work / f"rollout-{version}.yaml"
            f.write_text(ROLLOUT.format(version=version, stable=stable, socket=hap.info["socket"],
                                        stable_server=stable_server,
                                        canary_server=canary_server))
            banner(f"canary deploy -f {f.name}   (checkout -> {version})")
            code = subprocess.call([sys.executable, "-m", "canary", "deploy", "-f", str(f)],
                                   env=env, cwd=work)
            print(f"exit code {code}", flush=True)
            codes.append(code)
        result = load.stop()
        banner("canary history checkout")
        subprocess.call([sys.executable, "-m", "canary", "history", "checkout", "--limit", "2"],
                        env=env, cwd=work)
        banner("what the users saw")
        print(f"{result.sent} requests through HAProxy: by version {result.versions}, "
              f"by status {result.statuses}")
        print(f"slack messages received: {len(slack.payloads)}")
        slack.stop()
        ok = codes == [0, 1]
        banner("demo " + ("finished as expected: 2.0.0 promoted, 3.0.0 rolled back" if ok
                          else f"did NOT go as expected: exit codes {codes}"))
        return 0 if ok else 1
    finally:
        for s in reversed(servers):
            s.stop()


if __name__ == "__main__":
    sys.exit(main())
