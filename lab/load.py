"""A bounded load generator for the lab: a fixed request rate, for a fixed time, loopback only.

Rates in Prometheus need traffic for the whole window, and a test needs to know how much
traffic there was: this sends requests at a steady pace (never in catch-up bursts: a
request that is late is simply the next one), counts answers by status and by the
``X-Version`` header the lab app sets, and stops at its deadline or when told to.

    python -m lab.load --url http://127.0.0.1:8081/ --rps 50 --duration 20

In a test, ``Load(url, rps=50).start()`` runs it on a thread until ``stop()``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

MAX_RPS = 2000.0  # a lab tool: refuse rates that would only measure this generator


@dataclass(frozen=True)
class LoadResult:
    """What the load produced: counts by status code, by answering version, and failures."""

    sent: int
    statuses: Mapping[int, int] = field(default_factory=dict)
    versions: Mapping[str, int] = field(default_factory=dict)
    failures: int = 0  # no HTTP answer at all (refused, timed out)
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    def to_json(self) -> dict[str, object]:
        return {"sent": self.sent, "statuses": {str(k): v for k, v in self.statuses.items()},
                "versions": dict(self.versions), "failures": self.failures,
                "errors": self.errors, "seconds": round(self.seconds, 3)}


def check_loopback(url: str) -> None:
    """ValueError unless ``url`` is http(s) to a loopback host: the lab never leaves it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"expected an http:// URL, got {url!r}")
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the lab load generator only targets loopback hosts, got {host!r}")


def run_load(
    url: str,
    *,
    rps: float,
    duration: float | None,
    stop: threading.Event | None = None,
    timeout: float = 2.0,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Send GET ``url`` at ``rps`` until ``duration`` s passed or ``stop`` is set.

    ``duration=None`` runs until ``stop`` is set (and then ``stop`` is required).
    """
    check_loopback(url)
    if not 0 < rps <= MAX_RPS:
        raise ValueError(f"rps must be within (0, {MAX_RPS:g}], got {rps}")
    if duration is None and stop is None:
        raise ValueError("give a duration or a stop event, or the load never ends")
    stop = stop or threading.Event()
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    sent = failures = 0
    period = 1.0 / rps
    with httpx.Client(timeout=timeout, trust_env=False, headers=headers) as client:
        # The clock starts once the client exists: building it (SSL context) takes ~0.1 s.
        start = time.monotonic()
        deadline = None if duration is None else start + duration
        next_at = start
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            # Waiting on the event lets stop() end the load without a full period's lag.
            if next_at > now and stop.wait(next_at - now):
                break
            next_at = max(next_at + period, time.monotonic())  # late: no catch-up burst
            sent += 1
            try:
                response = client.get(url)
            except httpx.HTTPError:
                failures += 1
                continue
            statuses[response.status_code] += 1
            versions[response.headers.get("X-Version", "")] += 1
    return LoadResult(sent=sent, statuses=dict(statuses), versions=dict(versions),
                      failures=failures, seconds=time.monotonic() - start)


class Load:
    """``run_load`` on a background thread: ``start()``, then ``stop()`` returns the result."""

    def __init__(self, url: str, *, rps: float, duration: float | None = None,
                 timeout: float = 2.0, headers: Mapping[str, str] | None = None) -> None:
        check_loopback(url)
        self.url = url
        self._stop = threading.Event()
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, kwargs={"rps": rps, "duration": duration, "timeout": timeout,
                                      "headers": headers},
            name=f"load {url}", daemon=True,
        )

    def _run(self, *, rps: float, duration: float | None, timeout: float,
             headers: Mapping[str, str] | None) -> None:
        try:
            self._result = run_load(self.url, rps=rps, duration=duration, stop=self._stop,
                                    timeout=timeout, headers=headers)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in stop()
            self._error = exc

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> LoadResult:
        self._stop.set()
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise TimeoutError(f"load on {self.url} did not stop within {timeout}s")
        return self._result

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="a loopback URL")
    parser.add_argument("--rps", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--timeout", type=float, default=2.0, help="per request, seconds")
    args = parser.parse_args(argv)
    try:
        result = run_load(args.url, rps=args.rps, duration=args.duration, timeout=args.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return
    print(json.dumps(result.to_json()))


if __name__ == "__main__":
    main()
