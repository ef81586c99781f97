"""Values from ``${VAR}`` are secrets: registered when a rollout file is expanded, masked in
every spelling at the chokepoints (errors, events, hook results, log records, live output).

The registry is process-wide, so every test plants its own unique values.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from canary.config.policyfile import load_policy
from canary.config.spec import parse_rollout_text
from canary.console.progress import LineReporter
from canary.errors import InputError, RouterError
from canary.hooks.executor import MAX_KEPT, run_hook
from canary.model import Event, GateResult, HookResult, Notification, Weights
from canary.notify.slack import SlackNotifier
from canary.routers.command import CommandRouter
from canary.routers.http import HttpRouter
from canary.secrets import MASK, MIN_SECRET_LENGTH, redact_known
from canary.specs import HookCall
from lab.slack_receiver import SlackReceiver

ROLLOUT = """\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: ${NAME}
spec:
  service: checkout
  version: "${VERSION}"
  router:
    type: command
    setCommand: [set-split, "--token=${TOKEN}", "{canary}"]
    getCommand: [get-split, "--replicas=${REPLICAS}", "--mode=${MODE:-fast-and-safe}"]
  analysis:
    policy: time-only
  hooks:
    preRollout:
      - name: provision
        http:
          url: "http://ops:${PASSWORD}@127.0.0.1:9/provision"
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def expand(**env: str) -> None:
    parse_rollout_text(ROLLOUT, file="rollout.yaml", env=env)


def test_expanded_values_are_masked_but_not_short_ones_defaults_or_identities() -> None:
    token, password = unique("tok"), unique("pw/x")
    name, version = unique("checkout"), unique("v2")
    expand(NAME=name, VERSION=version, TOKEN=token, REPLICAS="3", PASSWORD=password)
    text = f"{token} {password} replicas=3 mode=fast-and-safe {name} {version}"
    assert redact_known(text) == f"{MASK} {MASK} replicas=3 mode=fast-and-safe {name} {version}"


def test_every_spelling_of_a_secret_is_masked() -> None:
    secret = unique('p"ss/wörd<&>')
    expand(NAME="n", VERSION="1", TOKEN=secret, REPLICAS="3", PASSWORD="pw")
    spellings = [
        secret,
        json.dumps(secret)[1:-1],  # \" and \u00f6
        json.dumps(secret)[1:-1].replace("/", "\\/"),  # as PHP and some Java encoders write
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(secret)[1:-1])[1:-1],  # JSON quoted inside JSON
        quote(secret, safe=""),
        quote(secret),
    ]
    for form in spellings:
        assert secret not in redact_known(f"<{form}>")
        assert redact_known(f"<{form}>") == f"<{MASK}>", form


def test_a_url_password_is_masked_in_basic_auth_too() -> None:
    password = unique("hunter")
    expand(NAME="n", VERSION="1", TOKEN="t", REPLICAS="3", PASSWORD=password)
    header = base64.b64encode(f"ops:{password}".encode()).decode()
    assert redact_known(f"Authorization: Basic {header}") == f"Authorization: Basic {MASK}"
    assert redact_known(f"ops:{password}@host") == f"{MASK}@host"


def test_the_length_threshold_is_the_documented_one() -> None:
    short, long = "a1b2c", "a1b2c3"
    assert len(short) == MIN_SECRET_LENGTH - 1 and len(long) == MIN_SECRET_LENGTH
    expand(NAME="n", VERSION="1", TOKEN=short, REPLICAS="3", PASSWORD="pw")
    assert redact_known(f"x {short} y") == f"x {short} y"
    expand(NAME="n", VERSION="1", TOKEN=long, REPLICAS="3", PASSWORD="pw")
    assert redact_known(f"x {long} y") == f"x {MASK} y"


def registered() -> str:
    secret = unique("reg")
    expand(NAME="n", VERSION="1", TOKEN=secret, REPLICAS="3", PASSWORD="pw")
    return secret


def test_errors_of_every_kind_are_masked_when_made() -> None:
    secret = registered()
    assert secret not in str(RouterError(f"`set --token={secret}` failed"))
    bad = InputError(f"bad value {secret}", file="f.yaml", line=3, field="spec.x")
    assert secret not in str(bad) and secret not in bad.message
    assert str(bad) == f"f.yaml:3: spec.x: bad value {MASK}"


def test_events_and_hook_results_are_masked_whoever_builds_them() -> None:
    secret = registered()
    event = Event(at=datetime.now(UTC), kind="x", message=f"saw {secret}",
                  data={"output": f"echo {secret}", "nested": [{"v": secret}], "n": 3})
    assert secret not in repr(event)
    assert event.data["n"] == 3 and event.data["nested"] == [{"v": MASK}]
    result = HookResult(key="k", ok=False, message=f"m {secret}", output=f"o {secret}")
    assert secret not in repr(result)


def test_log_records_are_masked_on_any_logger(caplog: pytest.LogCaptureFixture) -> None:
    secret = registered()
    with caplog.at_level(logging.INFO):
        logging.getLogger("anything.at.all").warning("router: %s", f"--token={secret}")
    assert caplog.records and secret not in caplog.text and "--token=***" in caplog.text


def test_live_lines_are_masked() -> None:
    secret = registered()
    out = io.StringIO()
    LineReporter(out).line(f"  | connecting with {secret}")
    assert out.getvalue() == f"  | connecting with {MASK}\n"


def test_a_failing_command_router_error_carries_no_secret(tmp_path: Path) -> None:
    secret = registered()
    script = tmp_path / "router.py"
    script.write_text("import sys\nprint('refused', *sys.argv, file=sys.stderr)\nsys.exit(3)\n")
    router = CommandRouter(set_command=(sys.executable, str(script), f"--token={secret}",
                                        "{canary}"),
                           get_command=(sys.executable, str(script), f"--token={secret}"))
    for call in (router.get_weights, lambda: router.set_weights(Weights(canary=0))):
        with pytest.raises(RouterError) as caught:
            call()
        assert secret not in str(caught.value) and "--token=***" in str(caught.value)


def test_the_http_router_shows_no_credentials_of_its_url() -> None:
    router = HttpRouter(url="http://ops:pa55word@127.0.0.1:9/split?key=k3y#frag")
    assert router.describe() == "http http://127.0.0.1:9/split"


def test_an_http_hook_is_described_without_its_password() -> None:
    call = HookCall(url="http://ops:pa55word@127.0.0.1:9/provision")
    assert call.describe() == "POST 127.0.0.1:9"


def test_hook_output_is_masked_before_it_is_cut(tmp_path: Path) -> None:
    secret = registered()
    # the secret straddles the cut: the kept tail would start in its middle
    tail = "x" * (MAX_KEPT - len(secret) // 2)
    script = tmp_path / "hook.py"
    script.write_text(f"import sys\nsys.stdout.write({secret!r} + {tail!r})\nsys.exit(1)\n")
    result = run_hook(HookCall(command=(sys.executable, str(script), f"--token={secret}")),
                      key="k", timeout=10, retries=0, backoff=0, context={}, cwd=str(tmp_path))
    assert not result.ok
    assert secret not in result.message and "--token=***" in result.message
    assert result.output == (MASK + tail)[-MAX_KEPT:]
    assert secret[len(secret) // 2:] not in result.output


def test_gate_results_and_alerts_are_masked_whoever_builds_them() -> None:
    secret = registered()
    gate = GateResult(ok=False, message=f"exit 1: {secret}", output=f"password={secret}")
    assert secret not in repr(gate)
    note = Notification(event="rolled-back", rollout="r", service="s", version="2",
                        stable_version="1", stage=1, weight=5, reason=f"router: {secret}")
    assert note.reason == f"router: {MASK}"


def test_a_slack_alert_carries_no_secret_over_the_wire() -> None:
    secret = registered()
    with SlackReceiver(echo=None) as receiver:
        note = Notification(event="needs-human", rollout="r", service="s", version="2",
                            stable_version="1", stage=1, weight=5,
                            reason=f"cannot roll back: `set --token={secret}` failed")
        SlackNotifier(receiver.url()).send(note)
        [request] = receiver.requests
    body = request.body.decode()
    assert "--token=***" in body and secret not in body


def test_a_logged_traceback_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    secret = registered()
    with caplog.at_level(logging.ERROR):
        try:
            raise ValueError(f"library error quoting {secret}")  # not a CanaryError
        except ValueError:
            logging.getLogger("some.library").exception("failed")
    assert "library error quoting ***" in caplog.text and secret not in caplog.text


def test_a_policy_file_registers_its_environment_values_too(tmp_path: Path) -> None:
    password = unique("prom")
    policy = tmp_path / "policy.yaml"
    policy.write_text("""\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: p
spec:
  prometheus:
    url: "http://canary:${PROM_PASSWORD}@127.0.0.1:9"
  interval: 1s
""")
    load_policy(str(policy), env={"PROM_PASSWORD": password})
    assert redact_known(f"GET with password {password}") == f"GET with password {MASK}"
