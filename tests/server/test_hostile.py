"""`canary serve` against bad and hostile clients, as a real process on a real socket: every
bad request is a 4xx (never a 500), a client that hangs up leaves no traceback, a request
that never finishes is cut off, a log line cannot be forged, and /readyz means the store
answers."""

from __future__ import annotations

import contextlib
import json
import random
import re
import select
import socket
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from lab import postgres
from lab.proc import wait_until
from tests.e2e.conftest import write_policy
from tests.server.conftest import OPERATOR_TOKEN, READ_TOKEN, Controller, StartServe, rollout_yaml

ALIAS_BOMB = """\
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+( \[[^\]]+\])?: ")


def serve(start_serve: StartServe, tmp_path: Path, *args: str,
          env: dict[str, str] | None = None) -> Controller:
    return start_serve(f"sqlite:///{tmp_path / 'state.db'}", args=args, env=env)


def raw(ctl: Controller, data: bytes) -> socket.socket:
    port = int(ctl.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


def valid_rollout(tmp_path: Path, name: str = "shop", **kw: str) -> str:
    policy = write_policy(tmp_path / "policy.yaml", "http://127.0.0.1:9")
    return rollout_yaml(name, socket=str(tmp_path / "nope.sock"), backend="shop",
                        version="2.0.0", policy=policy, pause="1h", **kw)


@pytest.mark.parametrize(("method", "path", "kw", "status", "says"), [
    ("GET", "/api/v1/rollouts?limit=1e23", {}, 400, "limit"),
    ("GET", "/api/v1/rollouts?limit=99999999999999999999999", {}, 400, "limit"),
    ("GET", "/api/v1/rollouts?limit=-1", {}, 400, "limit"),
    ("GET", "/api/v1/rollouts?active=maybe", {}, 400, "active"),
    ("GET", "/api/v1/rollouts/x?events=lots", {}, 400, "events"),
    ("GET", "/api/v1/rollouts/x/events?after=1e9", {}, 400, "after"),
    ("GET", "/static/nope.js", {}, 404, "nope.js"),
    ("GET", "/static/index.html", {}, 404, ""),
    ("GET", "/static/..%2Fapi.py", {}, 404, ""),
    ("GET", "/nothing/here", {}, 404, "no route"),
    ("PUT", "/api/v1/rollouts", {}, 405, "PUT is not allowed"),
    ("POST", "/api/v1/rollouts", {"content": b"a: [1\n",
                                  "headers": {"Content-Type": "application/yaml"}},
     400, "invalid YAML"),
    # an impossible date is text (the loader builds no dates), so this is an unknown field
    ("POST", "/api/v1/rollouts", {"content": b"when: 2024-13-45\n"}, 400, "unknown field"),
    ("POST", "/api/v1/rollouts", {"content": b"[" * 5000}, 400, "invalid YAML"),
    ("POST", "/api/v1/rollouts", {"content": b"\xff\xfe"}, 400, "UTF-8"),
    ("POST", "/api/v1/rollouts", {"content": ALIAS_BOMB.encode()}, 400, "expands to more"),
    ("POST", "/api/v1/rollouts", {"json": ["not", "an", "object"]}, 400, "object"),
    ("POST", "/api/v1/rollouts", {"json": {"document": 3}}, 400, "document"),
    ("POST", "/api/v1/rollouts", {"content": b"{", "headers": {
        "Content-Type": "application/json"}}, 400, "not valid JSON"),
    ("POST", "/api/v1/rollouts", {"content": b"x" * (1 << 21)}, 413, "at most"),
    ("POST", "/api/v1/rollouts/x/abort", {"content": b"[", "headers": {
        "Content-Type": "application/json"}}, 400, "not valid JSON"),
])
def test_bad_requests_are_4xx_with_a_reason(start_serve: StartServe, tmp_path: Path,
                                            method: str, path: str, kw: dict[str, object],
                                            status: int, says: str) -> None:
    ctl = serve(start_serve, tmp_path)
    r = ctl.call(method, path, **kw)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert says in r.json()["error"]


def test_alias_bomb_is_refused_before_it_is_expanded(start_serve: StartServe,
                                                     tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path)
    for _ in range(20):  # 20 bombs: each refused from the composed graph, never walked
        assert ctl.call("POST", "/api/v1/rollouts", content=ALIAS_BOMB.encode()
                        ).status_code == 400
    rss = next(int(line.split()[1]) for line in Path(
        f"/proc/{ctl.server.proc.pid}/status").read_text().splitlines()  # type: ignore[union-attr]
        if line.startswith("VmHWM:"))
    assert rss < 400 * 1024, f"peak RSS {rss} KiB: the bomb was expanded"


def test_no_500_over_a_batch_of_hostile_requests(start_serve: StartServe,
                                                 tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path)
    rng = random.Random(13)
    junk = ["", "1e23", "-1", "nan", "\x00", "%00", "%0a", "../../etc/passwd", "9" * 40,
            "true", "[]", "{}", "${HOME}", "é", "\u2028"]
    paths = ["/api/v1/rollouts", "/api/v1/rollouts/{j}", "/api/v1/rollouts/{j}/events",
             "/api/v1/rollouts/{j}/abort", "/api/v1/rollouts/{j}/promote", "/static/{j}",
             "/{j}", "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"]
    bodies: list[bytes] = [b"", b"{", b"null", b"[]", b'{"document": null}',
                           b'{"full": "yes"}', ALIAS_BOMB.encode(), b"a: *nope",
                           b"- !!python/object:os.system x", b"\x00\x01\x02",
                           b"spec: {service: ${CANARY_API_TOKENS_OPERATOR}}"]
    statuses = []
    for _ in range(300):
        path = rng.choice(paths).replace("{j}", quote(rng.choice(junk), safe="%") or "x")
        params = {rng.choice(["limit", "events", "after", "active", "full", "version"]):
                  rng.choice(junk) for _ in range(rng.randint(0, 3))}
        token = rng.choice([OPERATOR_TOKEN, READ_TOKEN, None, "bad"])
        ctype = rng.choice(["application/json", "application/yaml", "text/plain", ""])
        r = ctl.call(rng.choice(["GET", "POST", "PUT", "DELETE"]), path, params=params,
                     token=token, content=rng.choice(bodies),
                     headers={"Content-Type": ctype} if ctype else {})
        statuses.append(r.status_code)
        assert r.status_code < 500, (path, params, r.status_code, r.text)
    assert {400, 401, 404, 405} <= set(statuses)
    assert ctl.call("GET", "/healthz").status_code == 200
    log = ctl.log()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_clients_that_hang_up_leave_no_traceback(start_serve: StartServe,
                                                 tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path)
    big = valid_rollout(tmp_path).encode()
    for i in range(60):
        kind = i % 4
        if kind == 0:  # half the headers, then gone
            raw(ctl, b"GET /api/v1/rollouts HTTP/1.1\r\nHost: x\r\n").close()
        elif kind == 1:  # a body promised, a tenth sent, then gone
            raw(ctl, b"POST /api/v1/rollouts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + OPERATOR_TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(big)
                + big[: len(big) // 10]).close()
        elif kind == 2:  # a whole request, gone before reading the answer (RST)
            sock = raw(ctl, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00"
                            b"\x00\x00")
            sock.close()
        else:  # the page's script, read a few bytes of, then gone
            sock = raw(ctl, b"GET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(10)
            sock.close()
    time.sleep(1)
    assert ctl.call("GET", "/healthz").status_code == 200
    log = ctl.log()
    for word in ("Traceback", "BrokenPipe", "ConnectionReset", "Exception", "ERROR"):
        assert word not in log, log[-3000:]


def test_a_request_that_never_finishes_is_cut_off(start_serve: StartServe,
                                                  tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path, "--read-timeout", "1s")
    idle = raw(ctl, b"")
    half = raw(ctl, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    body = raw(ctl, b"POST /api/v1/rollouts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
               b"Authorization: Bearer " + OPERATOR_TOKEN.encode() + b"\r\n\r\nkind: ")
    try:
        for sock in (idle, half, body):
            sock.settimeout(20)
            assert sock.recv(4096) == b""  # closed by the server, nothing answered
    finally:
        for sock in (idle, half, body):
            sock.close()
    # A client that is slow but finishes in time is answered.
    slow = raw(ctl, b"GET /healthz HTTP/1.1\r\n")
    time.sleep(0.3)
    slow.sendall(b"Host: x\r\n\r\n")
    assert slow.recv(4096).startswith(b"HTTP/1.1 200")
    slow.close()


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(20)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(4096):
            data += chunk
    sock.close()
    return data


def test_request_heads_over_16_kib_are_refused(start_serve: StartServe,
                                               tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path)
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 1000) for i in range(20))
    # A whole head of 20 KiB: refused at once (400, as any malformed request).
    answer = _answer(raw(ctl, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n"))
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    # One header line that never ends, sent in pieces: refused with a 400 once over the
    # limit, not left in memory until the read timeout closes it without an answer.
    sock = raw(ctl, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    for _ in range(64):
        if select.select([sock], [], [], 0.1)[0]:
            break  # the server answered
        with contextlib.suppress(OSError):
            sock.sendall(b"z" * 1024)
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    # Under the limit is fine.
    eight_kib = pad[: pad.index(b"X-Pad-8:")]
    answer = _answer(raw(ctl, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         + eight_kib + b"\r\n"))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_log_lines_cannot_be_forged(start_serve: StartServe, tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path)
    forged = "\n2030-01-01 00:00:00,000 INFO canary.server.api: FORGED"
    r = ctl.call("POST", "/api/v1/rollouts", json={"document": valid_rollout(tmp_path),
                                                   "version": "2.0.0" + forged})
    assert r.status_code == 201, r.text
    assert ctl.call("POST", "/api/v1/rollouts/shop%0A2030-01-01 00:00:00,000 INFO x: FORGED"
                    "/abort").status_code == 404
    wait_until(lambda: "FORGED" in ctl.log(), timeout=10, what="the submit log line")
    ctl.terminate()
    lines = ctl.log().splitlines()
    assert all(LOG_LINE.match(x) for x in lines), lines
    assert sum("FORGED" in x for x in lines) == 2
    assert not any(x.startswith("2030-") for x in lines)


def test_json_log_lines_name_their_rollout(start_serve: StartServe, tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path, "--log-format", "json")
    r = ctl.call("POST", "/api/v1/rollouts", json={"document": valid_rollout(tmp_path),
                                                   "version": "2.0.0\nx"})
    assert r.status_code == 201, r.text
    wait_until(lambda: ctl.log().count("\n") > 4, timeout=20, what="a few ticks' lines")
    ctl.terminate()
    lines = [json.loads(x) for x in ctl.log().splitlines()]
    assert all(set(x) >= {"time", "level", "rollout", "stage", "event", "message"}
               for x in lines)
    about = [x for x in lines if "shop" in x["message"]]
    assert about and all(x["rollout"] == "shop" for x in about), about
    submitted = next(x for x in lines if x["event"] == "submitted")
    assert submitted["message"].endswith("-> 2.0.0\nx)")  # the value, escaped in JSON


def test_readyz_is_the_store_answering(start_serve: StartServe) -> None:
    if not postgres.available():
        pytest.skip("PostgreSQL binaries not found")
    server = postgres.start_postgres()
    try:
        ctl = start_serve(str(server.info["dsn"]))
        assert ctl.call("GET", "/readyz", token=None).json() == {"ok": True, "error": None}
        postgres.stop_postgres(server)
        r = ctl.call("GET", "/readyz", token=None)
        assert r.status_code == 503 and r.json()["ok"] is False, r.text
        assert "store" in r.json()["error"]
        assert ctl.call("GET", "/healthz", token=None).status_code == 200  # alive, not ready
    finally:
        postgres.stop_postgres(server)


def test_openapi_is_generated_from_the_models(start_serve: StartServe,
                                              tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path)
    spec = ctl.call("GET", "/api/v1/openapi.json", token=None).json()
    schemas = spec["components"]["schemas"]
    assert {"Status", "Summary", "Submitted", "Events", "CommandAccepted"} <= set(schemas)
    status = ctl.call("POST", "/api/v1/rollouts", json={"document": valid_rollout(tmp_path)})
    assert status.status_code == 201, status.text
    # What a route returns has every property the schema documents for it, and no more.
    body = status.json()
    assert set(body) == set(schemas["Submitted"]["properties"])
    assert set(body["rollout"]) == set(schemas["Status"]["properties"])
    one = ctl.call("GET", "/api/v1/rollouts/shop", token=READ_TOKEN).json()
    assert set(one) == set(schemas["Status"]["properties"])


def test_httpx_client_sees_security_headers(start_serve: StartServe, tmp_path: Path) -> None:
    ctl = serve(start_serve, tmp_path)
    for path in ("/", "/static/app.js", "/healthz", "/api/v1/rollouts"):
        r = httpx.get(ctl.url + path, trust_env=False)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
