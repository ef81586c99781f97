"""Synthetic series for N services x 2 versions, for Prometheus to scrape in the benchmark.

Real demo apps would need N processes; what the controller's analysis reads is only the
conventional series, so one process exports them for every service: counters that grow at
a fixed rate (2% errors on every version) and a latency histogram, computed from the clock
at each scrape.

    python -m bench.serve.fakeapps --port 9100 --services 1000
"""

from __future__ import annotations

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SHARE = (0.30, 0.55, 0.80, 0.92, 0.97, 0.99, 0.995, 1.0)  # cumulative share per bucket


def exposition(services: int, started: float, *, rps: float = 5.0) -> bytes:
    elapsed = time.monotonic() - started
    lines = ["# TYPE http_requests_total counter",
             "# TYPE http_request_duration_seconds histogram"]
    for i in range(services):
        svc = f"svc-{i:04d}"
        for version in ("1.0.0", "2.0.0"):
            total = rps * elapsed
            sel = f'service="{svc}",version="{version}"'
            lines.append(f'http_requests_total{{{sel},code="200"}} {total * 0.98:.3f}')
            lines.append(f'http_requests_total{{{sel},code="500"}} {total * 0.02:.3f}')
            for le, share in zip(BUCKETS, SHARE, strict=True):
                lines.append(f'http_request_duration_seconds_bucket{{{sel},le="{le}"}} '
                             f"{total * share:.3f}")
            lines.append(f'http_request_duration_seconds_bucket{{{sel},le="+Inf"}} {total:.3f}')
            lines.append(f"http_request_duration_seconds_count{{{sel}}} {total:.3f}")
            lines.append(f"http_request_duration_seconds_sum{{{sel}}} {total * 0.02:.3f}")
    return ("\n".join(lines) + "\n").encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--services", type=int, required=True)
    args = parser.parse_args(argv)
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = exposition(args.services, started) if self.path == "/metrics" else b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
