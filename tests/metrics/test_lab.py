"""The lab tools the metric tests stand on: the demo app's errors and series, the load."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import httpx
import pytest

from lab.app import REPO_ROOT, ErrorSchedule, make_server
from lab.load import Load, run_load
from lab.proc import free_port


@pytest.fixture()
def app() -> Iterator[str]:
    server: ThreadingHTTPServer = make_server(0, version="2.0.0", error_rate=0.4)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(("rate", "n", "failures"), [(0.0, 100, 0), (0.4, 100, 40),
                                                     (0.4, 7, 2), (1.0, 10, 10)])
def test_errors_are_spread_exactly(rate: float, n: int, failures: int) -> None:
    schedule = ErrorSchedule(rate)
    assert sum(schedule.next_fails() for _ in range(n)) == failures


def test_fresh_app_exports_zero_for_5xx_not_a_missing_series(app: str) -> None:
    text = httpx.get(f"{app}/metrics", trust_env=False).text
    assert 'http_requests_total{code="500",service="checkout",version="2.0.0"} 0.0' in text
    assert 'http_request_duration_seconds_bucket{le="+Inf",service="checkout",version="2.0.0"}' \
        in text


def test_load_keeps_its_rate_and_counts_answers(app: str) -> None:
    result = run_load(f"{app}/", rps=50, duration=1.0)
    assert 40 <= result.sent <= 51  # a busy machine may send fewer, never more
    assert result.statuses == {200: result.sent - int(result.sent * 0.4),
                               500: int(result.sent * 0.4)}
    assert result.versions == {"2.0.0": result.sent}
    assert result.errors == int(result.sent * 0.4) and result.failures == 0
    metrics = httpx.get(f"{app}/metrics", trust_env=False).text
    assert f'code="500",service="checkout",version="2.0.0"}} {result.errors}.0' in metrics


def test_background_load_stops_promptly() -> None:
    load = Load(f"http://127.0.0.1:{free_port()}/", rps=2).start()  # nothing listens
    time.sleep(1.0)  # the first request goes at once; time for a loaded machine to send it
    start = time.monotonic()
    result = load.stop()
    # A hang guard, not a speed figure: stop() must not wait out a request timeout (30 s).
    assert time.monotonic() - start < 5
    assert result.sent >= 1 and result.failures == result.sent


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://example.com/", "ftp://127.0.0.1/"])
def test_load_refuses_anything_but_loopback_http(url: str) -> None:
    with pytest.raises(ValueError, match="loopback|http"):
        run_load(url, rps=1, duration=1)


def test_app_refuses_a_non_loopback_address() -> None:
    with pytest.raises(ValueError, match="loopback"):
        make_server(0, version="1", host="0.0.0.0")


def test_load_command_prints_its_result(app: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lab.load", "--url", f"{app}/", "--rps", "20",
         "--duration", "0.5"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
        check=True).stdout
    result = json.loads(out)
    assert 6 <= result["sent"] <= 11 and result["failures"] == 0
    assert result["versions"] == {"2.0.0": result["sent"]}
