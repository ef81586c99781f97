"""A slow or failing Prometheus costs one check at most its budget, never more.

``canary deploy`` gives the provider a timeout of min(10 s, interval) and the analyzer a
budget of the same size for the whole check. A stub answers after a set delay (or with a
5xx), since a healthy Prometheus does neither on demand.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from canary.analysis.analyzer import PolicyAnalyzer, check_budget
from canary.metrics.prometheus import PrometheusProvider
from canary.model import Outcome
from canary.specs import MetricSpec, PolicySpec
from tests.rollout.helpers import new_state

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ANSWER = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {}, "value": [0, "0.001"]}]}}).encode()
DELAYS = {"/hangs": 30.0, "/slow": 0.4, "/fast": 0.0}
METRICS = (MetricSpec(name="error-rate", builtin="error-rate", max=0.01, min_requests=10),
           MetricSpec(name="latency", builtin="latency", max=0.5),
           MetricSpec(name="rps", builtin="request-rate", min=0),
           MetricSpec(name="queue", query='max(queue{service="{{ service }}"})', max=5))


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            prefix = "/" + self.path.split("/")[1]
            if prefix == "/down":
                body = b'{"status":"error","errorType":"unavailable","error":"overloaded"}'
                self._reply(503, body)
                return
            time.sleep(DELAYS[prefix])
            self._reply(200, ANSWER)

        def _reply(self, code: int, body: bytes) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up waiting: that is the point

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def check(url: str, *, interval: float) -> tuple[dict[str, str], float, PolicyAnalyzer]:
    """One check as ``canary deploy`` wires it: provider timeout = budget = min(10, interval)."""
    policy = PolicySpec(name="p", prometheus_url=url, interval=interval, window=60.0,
                        metrics=METRICS)
    provider = PrometheusProvider(url, timeout=min(10.0, interval))
    analyzer = PolicyAnalyzer(policy, provider)
    start = time.monotonic()
    verdict = analyzer.measure(new_state(), NOW)
    seconds = time.monotonic() - start
    provider.close()
    for r in verdict.results:
        print(f"  {r.name}: {r.outcome.value}: {r.message.split(' (threshold')[0]}")
    return {r.name: r.message for r in verdict.results if r.outcome is Outcome.ERROR}, \
        seconds, analyzer


def test_the_budget_is_the_interval_capped_at_ten_seconds() -> None:
    policy = PolicySpec(name="p", prometheus_url="http://h:1", interval=60, window=60,
                        metrics=())
    assert check_budget(policy) == 10.0
    assert check_budget(PolicySpec(name="p", prometheus_url="http://h:1", interval=2,
                                   window=60, metrics=())) == 2.0


def test_a_prometheus_that_never_answers_costs_one_budget(stub: str) -> None:
    errors, seconds, analyzer = check(f"{stub}/hangs", interval=1.0)
    print(f"hanging Prometheus, interval 1 s: check over after {seconds:.2f} s")
    assert analyzer.budget == 1.0
    assert set(errors) == {m.name for m in METRICS}
    assert "did not answer within 1s" in errors["error-rate"]
    assert all("not asked: slow answers used up this check's 1s budget" in errors[m]
               for m in ("latency", "rps", "queue"))
    assert 1.0 <= seconds < 1.3


def test_a_slow_prometheus_answers_what_fits_in_the_budget(stub: str) -> None:
    errors, seconds, _ = check(f"{stub}/slow", interval=1.0)
    print(f"Prometheus answering in 0.4 s, interval 1 s: check over after {seconds:.2f} s, "
          f"{len(errors)} of 5 queries unanswered")
    assert "error-rate" not in errors  # its query and its request count: 0.8 s
    # the latency query got what was left: about 0.2 s
    assert re.search(r"did not answer within 0\.[12]\d*s", errors["latency"])
    assert "not asked" in errors["rps"] and "not asked" in errors["queue"]
    assert seconds < 1.9  # the five queries unbudgeted: 2 s (slack for a loaded machine)


def test_a_prometheus_answering_5xx_is_an_error_at_once(stub: str) -> None:
    errors, seconds, _ = check(f"{stub}/down", interval=1.0)
    assert set(errors) == {m.name for m in METRICS}
    assert "answered HTTP 503 (unavailable: overloaded)" in errors["error-rate"]
    assert seconds < 2.0  # no retry, no wait (slack for a loaded machine)


def test_a_fast_prometheus_is_unaffected(stub: str) -> None:
    errors, seconds, _ = check(f"{stub}/fast", interval=1.0)
    assert errors == {} and seconds < 2.0
