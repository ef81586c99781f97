"""Plant secrets through ``${VAR}`` everywhere a rollout file can carry them, run real
rollouts that fail and succeed, and count where any secret surfaces.

Every secret reaches canary only through the environment: router arguments of the command
router, the HTTP router's URL (password and query), an HTTP hook's URL password and
headers, a command hook's ``--token=`` argument and environment, a migration's environment,
the Slack webhook URL, a webhook notification's URL and signing key. The servers are real
(loopback HTTP servers, scripts run as processes) and they echo what they are given: the
HTTP router answers errors quoting its Authorization header and query, the hook server
answers with every header raw, JSON-escaped (``\\/``, ``\\"``, ``\\uXXXX``) and URL-encoded,
the command hook and the router scripts print their arguments and environment.

Then it greps canary's stdout and stderr, ``status -o json``, ``history -o json``, the
SQLite files' bytes and every payload the Slack and webhook receivers got, for each secret
in every spelling (raw, JSON-escaped, URL-encoded, base64 of ``user:password``).

    .venv/bin/python -m bench.secrets_leak                    # this checkout
    .venv/bin/python -m bench.secrets_leak --repo /work/main  # another checkout's canary

Prints one line per leak and a total; exits 1 if anything leaked.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

REPO = Path(__file__).resolve().parents[1]

# name -> value. Long and distinctive; some carry "/", '"' and non-ASCII letters so that
# JSON escaping changes them.
SECRETS = {
    "ROUTER_CMD_TOKEN": "rct-7f3a9c1e-setcmd-token",
    "ROUTER_GET_SECRET": "rgs-51b2d8e0-getcmd-secret",
    "ROUTER_HTTP_PASS": "rhp-9e1f44aa-router-pass",
    "ROUTER_URL_KEY": "ruk-0c7d3b19-query-key",
    "HOOK_URL_PASS": "hup-2a6e8f71-hook-pass",
    "HOOK_HEADER_KEY": 'hhk-8d2c/with"quote-and/slash',
    "HOOK_BEARER": "hbr-3f9a0b6c/bearer/token",
    "HOOK_CMD_TOKEN": "hct-6b1e7d24-cmd-token",
    "HOOK_ENV_SECRET": "hes-sécret-ënv-4c8a2e90",
    "DB_PASSWORD": "dbp-1d5f9a3c-migration",
    "SLACK_TOKEN": "slk-T0B0-5e2a9d7f1c3b",
    "WEBHOOK_TOKEN": "wht-4e7c1a9b-webhook-url",
    "WEBHOOK_SIGNING": "whs-8a3f6d2e-signing-key",
    "ROUTER_BEARER": "rbr-2c9e5a7f-router-bearer",
}
USERS = {"ROUTER_HTTP_PASS": "router", "HOOK_URL_PASS": "hookuser"}


def spellings(name: str, value: str) -> set[str]:
    """Every way the secret may be written in text that quotes it."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/")}
    forms |= {json.dumps(f)[1:-1] for f in forms}  # quoted twice: JSON text inside JSON
    if name in USERS:
        forms.add(base64.b64encode(f"{USERS[name]}:{value}".encode()).decode().rstrip("="))
    return forms


@dataclass
class Sink:
    """A loopback HTTP server: every request kept, answered by ``answer``."""

    answer: Callable[[str, str, dict[str, str], bytes], tuple[int, str]]
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    def start(self) -> Sink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()}
                sink.requests.append((self.command, self.path, headers, body))
                status, text = sink.answer(self.command, self.path, headers, body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815 - stdlib naming

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HttpRouterServer:
    """The split as JSON; after the first answer (deploy's check that the router is usable)
    the next requests fail, quoting what authenticated them."""

    def __init__(self, failures: int) -> None:
        self.split = {"stable": 100, "canary": 0}
        self.failures = failures
        self.answered = 0

    def __call__(self, method: str, path: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, str]:
        self.answered += 1
        if self.answered > 1 and self.failures > 0:
            self.failures -= 1
            echo = {"error": "not ready", "authorization": headers.get("Authorization", ""),
                    "query": parse_qs(urlsplit(path).query)}
            return 503, json.dumps(echo).replace("/", "\\/")
        if method == "PUT":
            self.split = json.loads(body)
        return 200, json.dumps(self.split)


def echo_hook(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """Answers with every header raw, JSON-escaped with ``\\/`` and URL-encoded."""
    shown = {k: v for k, v in headers.items() if k.lower() in ("authorization", "x-api-key")}
    raw = " ".join(shown.values())
    escaped = json.dumps(shown).replace("/", "\\/")
    return 200, json.dumps({"seen": raw, "encoded": quote(raw)})[:-1] + f', "json": {escaped}}}'


# Moves traffic forward, then breaks: taking traffic back to stable fails (quoting its
# arguments), and from then on reading the split fails too. A rollback that cannot finish.
ROUTER_SCRIPT = """\
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
state, broken = os.path.join(here, "split.json"), os.path.join(here, "broken")
current = json.load(open(state)) if os.path.exists(state) else {"stable": 100, "canary": 0}
if sys.argv[1] == "set":
    canary = int(sys.argv[-1])
    if canary < current["canary"]:
        open(broken, "w").close()
        print("refused", " ".join(sys.argv), file=sys.stderr)
        sys.exit(3)
    json.dump({"stable": 100 - canary, "canary": canary}, open(state, "w"))
elif os.path.exists(broken):
    print("cannot read", " ".join(sys.argv), file=sys.stderr)
    sys.exit(4)
else:
    print(json.dumps(current))
"""

HOOK_SCRIPT = """\
import json, os, sys
print("args:", " ".join(sys.argv[1:]))
print(json.dumps({"env": os.environ.get("API_SECRET", ""), "args": sys.argv[1:]}))
if "--fail" in sys.argv:
    print("failing with", " ".join(sys.argv), file=sys.stderr)
    sys.exit(1)
"""

POLICY = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: time-only
spec:
  interval: 1s
"""


def rollout(name: str, *, router: str, hook_port: int, webhook_port: int, slack_port: int,
            fail_hook: bool, migration: bool) -> str:
    fail = ', "--fail"' if fail_hook else ""
    mig = """\
  migration:
    command: [python3, -c, "import os; print('connecting with', os.environ['DB_PASSWORD'])"]
    env: {DB_PASSWORD: "${DB_PASSWORD}"}
    idempotent: true
""" if migration else ""
    return f"""\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: {name}
spec:
  service: {name}
  version: "2.0.0"
  stableVersion: "1.0.0"
{router}
  stages: [50, 100]
  pause: 1s
  analysis:
    policy: policy.yaml
{mig}  hooks:
    preRollout:
      - name: provision
        http:
          url: "http://hookuser:${{HOOK_URL_PASS}}@127.0.0.1:{hook_port}/provision"
          headers:
            X-Api-Key: '${{HOOK_HEADER_KEY}}'
            Authorization: "Bearer ${{HOOK_BEARER}}"
        retries: 0
    postStage:
      - name: smoke
        command: [python3, hook.py, "--token=${{HOOK_CMD_TOKEN}}"{fail}]
        env: {{API_SECRET: "${{HOOK_ENV_SECRET}}"}}
        retries: 1
        backoff: 0.1s
  notifications:
    - type: slack
      webhookUrl: "http://127.0.0.1:{slack_port}/services/T000/B000/${{SLACK_TOKEN}}"
    - type: webhook
      webhookUrl: "http://127.0.0.1:{webhook_port}/alerts?token=${{WEBHOOK_TOKEN}}"
      secretEnv: WEBHOOK_SIGNING
"""


def http_router(port: int) -> str:
    return f"""\
  router:
    type: http
    url: "http://router:${{ROUTER_HTTP_PASS}}@127.0.0.1:{port}/split?key=${{ROUTER_URL_KEY}}"
    tokenEnv: ROUTER_BEARER
    timeout: 2s"""


COMMAND_ROUTER = """\
  router:
    type: command
    setCommand: [python3, router.py, set, "--token=${ROUTER_CMD_TOKEN}", "{canary}"]
    getCommand: [python3, router.py, get, "--secret=${ROUTER_GET_SECRET}"]
    timeout: 5s"""


@dataclass
class Run:
    seen: dict[str, bytes]  # place -> every text a person or another program could see
    exits: dict[str, int]  # rollout -> exit code of its deploy
    received: dict[str, list[tuple[str, str, dict[str, str], bytes]]]  # server -> requests


def run(repo: Path, work: Path) -> Run:
    """Run the rollouts with ``repo``'s canary in ``work``."""
    slack = Sink(lambda *a: (200, "ok")).start()
    webhook = Sink(lambda *a: (200, "{}")).start()
    hooks = Sink(echo_hook).start()
    router = Sink(HttpRouterServer(failures=3)).start()
    (work / "router.py").write_text(ROUTER_SCRIPT)
    (work / "hook.py").write_text(HOOK_SCRIPT)
    (work / "policy.yaml").write_text(POLICY)
    store = work / "state.db"
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(repo), "CANARY_STORE": f"sqlite:///{store}"}
    ports = {"hook_port": hooks.port, "webhook_port": webhook.port, "slack_port": slack.port}
    plan = [  # name, router block, failing hook, migration, deploy timeout
        ("promoted", http_router(router.port), False, True, "60s"),
        ("hook-fails", http_router(router.port), True, False, "60s"),
        ("router-fails", COMMAND_ROUTER, True, False, "60s"),
    ]
    seen: dict[str, bytes] = {}
    exits: dict[str, int] = {}
    names = []
    try:
        for name, block, fail_hook, migration, timeout in plan:
            f = work / f"{name}.yaml"
            f.write_text(rollout(name, router=block, fail_hook=fail_hook, migration=migration,
                                 **ports))
            done = subprocess.run([sys.executable, "-m", "canary", "deploy", "-f", str(f),
                                   "--timeout", timeout, "--poll", "0.2"], cwd=work, env=env,
                                  capture_output=True, timeout=180, check=False)
            print(f"deploy {name}: exit {done.returncode}", file=sys.stderr)
            exits[name] = done.returncode
            seen[f"{name}: stdout"] = done.stdout
            seen[f"{name}: stderr"] = done.stderr
            names.append(name)
        for name in names:
            out = subprocess.run([sys.executable, "-m", "canary", "status", name, "-o", "json"],
                                 cwd=work, env=env, capture_output=True, timeout=60, check=False)
            seen[f"{name}: status -o json"] = out.stdout + out.stderr
        out = subprocess.run([sys.executable, "-m", "canary", "history", "-o", "json"],
                             cwd=work, env=env, capture_output=True, timeout=60, check=False)
        seen["history -o json"] = out.stdout + out.stderr
    finally:
        for sink in (slack, webhook, hooks, router):
            sink.stop()
    for suffix in ("", "-wal", "-shm"):
        db = Path(f"{store}{suffix}")
        if db.exists():
            seen[f"sqlite file {db.name}"] = db.read_bytes()
    seen["slack payloads"] = b"\n".join(r[3] for r in slack.requests)
    seen["webhook payloads"] = b"\n".join(r[3] for r in webhook.requests)
    received = {"slack": slack.requests, "webhook": webhook.requests, "hooks": hooks.requests,
                "router": router.requests}
    return Run(seen=seen, exits=exits, received=received)


def leaks(seen: dict[str, bytes]) -> Counter[tuple[str, str]]:
    """(secret, place) -> occurrences, every spelling counted."""
    found: Counter[tuple[str, str]] = Counter()
    for name, value in SECRETS.items():
        forms = spellings(name, value)
        for place, data in seen.items():
            text = data.decode("utf-8", "replace")
            # count each spot once even when two spellings coincide
            spots = {(i, len(f)) for f in forms for i in _find_all(text, f)}
            if spots:
                found[(name, place)] = len(spots)
    return found


def _find_all(text: str, needle: str) -> list[int]:
    out, start = [], 0
    while (i := text.find(needle, start)) >= 0:
        out.append(i)
        start = i + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose canary runs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="canary-secrets-"))
    result = run(args.repo.resolve(), work)
    found = leaks(result.seen)
    for (name, place), count in sorted(found.items()):
        print(f"LEAK {name} in {place}: {count}")
    leaked = sorted({name for name, _ in found})
    print(f"{len(leaked)} of {len(SECRETS)} secrets leaked, {sum(found.values())} occurrences "
          f"in {len({p for _, p in found})} places; exits {result.exits}, alerts: "
          f"{len(result.received['slack'])} Slack, {len(result.received['webhook'])} webhook")
    if args.keep:
        print(f"work directory: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
