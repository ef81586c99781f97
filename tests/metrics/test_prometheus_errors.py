"""How the provider fails: fast, as canary errors, naming the server without credentials.

A dead port and a socket that never answers are real network conditions. The 5xx and
not-Prometheus answers come from a small stdlib HTTP server, since a healthy Prometheus
does not produce them on demand.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from canary.errors import InputError, MetricsError
from canary.metrics.prometheus import PrometheusProvider, parse_result, redact_url
from lab.proc import free_port

STUB_REPLIES = {
    "/down/api/v1/query": (503, "application/json",
                           b'{"status":"error","errorType":"unavailable","error":"TSDB busy"}'),
    "/proxy/api/v1/query": (502, "text/html", b"<html>Bad Gateway</html>"),
    "/html/api/v1/query": (200, "text/html", b"<html>login</html>"),
    "/odd/api/v1/query": (200, "application/json", b'{"status":"success","data":{}}'),
    "/exec/api/v1/query": (422, "application/json",
                           b'{"status":"error","errorType":"execution","error":"many-to-many"}'),
}


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            code, ctype, body = STUB_REPLIES[self.path.split("?")[0]]
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def timed_error(url: str, *, timeout: float = 5.0) -> tuple[Exception, float]:
    with PrometheusProvider(url, timeout=timeout) as provider:
        start = time.monotonic()
        with pytest.raises(Exception) as err:
            provider.query("up")
        return err.value, time.monotonic() - start


def test_unreachable_prometheus_fails_fast_without_retries() -> None:
    port = free_port()
    error, seconds = timed_error(f"http://admin:hunter2@127.0.0.1:{port}/")
    assert isinstance(error, MetricsError)
    assert str(error) == (
        f"Prometheus at http://127.0.0.1:{port} is unreachable: connection refused")
    assert "hunter2" not in str(error) and "admin" not in str(error)
    assert seconds < 1.0
    print(f"unreachable Prometheus: MetricsError after {seconds * 1000:.1f} ms")


def test_a_server_that_never_answers_times_out_after_the_timeout() -> None:
    with socket.socket() as listener:  # accepts connections into its backlog, never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        error, seconds = timed_error(f"http://127.0.0.1:{port}", timeout=0.3)
    assert isinstance(error, MetricsError)
    assert "did not answer within 0.3s" in str(error)
    assert 0.3 <= seconds < 1.0
    print(f"silent server, timeout 0.3 s: MetricsError after {seconds:.3f} s")


@pytest.mark.parametrize(("path", "words"), [
    ("/down", "answered HTTP 503 (unavailable: TSDB busy)"),
    ("/proxy", "answered HTTP 502 (no Prometheus error text)"),
    ("/exec", "answered HTTP 422 (execution: many-to-many)"),
    ("/html", "did not give a Prometheus API answer"),
    ("/odd", "did not give a Prometheus API answer"),
])
def test_server_errors_and_foreign_answers_are_metrics_errors(
        stub: str, path: str, words: str) -> None:
    error, _ = timed_error(stub + path)
    assert isinstance(error, MetricsError)
    assert words in str(error) and f"Prometheus at {stub}{path}" in str(error)


def test_metrics_errors_are_temporary_and_carry_the_cause() -> None:
    error, _ = timed_error(f"http://127.0.0.1:{free_port()}")
    assert isinstance(error, MetricsError) and error.retry_after > 0
    assert error.__cause__ is not None  # translated with raise ... from exc


@pytest.mark.parametrize("url", ["127.0.0.1:9090", "ftp://h/", "http://"])
def test_a_url_that_is_not_http_is_an_input_error(url: str) -> None:
    with pytest.raises(InputError) as err:
        PrometheusProvider(url)
    assert err.value.field == "prometheus.url"


@pytest.mark.parametrize(("url", "safe"), [
    ("http://u:p@prom:9090/base?token=x", "http://prom:9090/base"),
    ("https://prom.example", "https://prom.example"),
    ("http://u@[::1]:9090", "http://[::1]:9090"),
])
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe


def test_parse_result_shapes() -> None:
    [scalar] = parse_result([1.5, "NaN"])
    assert scalar.labels == {} and scalar.value != scalar.value
    [series] = parse_result([{"metric": {"a": "b"}, "value": [1.5, "+Inf"]}])
    assert (dict(series.labels), series.value) == ({"a": "b"}, float("inf"))
    assert parse_result([]) == []
    with pytest.raises(MetricsError):
        parse_result({"unexpected": True})
