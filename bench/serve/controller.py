"""`canary serve` with batched Prometheus queries, for the benchmark's comparison.

The same run_serve as `canary serve`; only the analyzer's provider differs, injected
through the runner factory: every rollout's PolicyAnalyzer asks one shared BatchHub.

    python -m bench.serve.controller --store URL --listen 127.0.0.1:8080 --tick 10s
"""

from __future__ import annotations

import argparse
import sys

from bench.serve.batching import BatchedProvider, BatchHub
from canary.durations import parse_duration
from canary.model import PolicySpec
from canary.rollout.runner import Analyzer, Runner
from canary.rollout.state import RolloutState
from canary.serve import run_serve
from canary.store.base import StateStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--tick", default="10s")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--max-age", type=float, default=5.0,
                        help="seconds a grouped answer is reused")
    args = parser.parse_args(argv)
    hubs: dict[str, BatchHub] = {}
    tick = parse_duration(args.tick)

    def analyzer(policy: PolicySpec) -> Analyzer:
        from canary.analysis.analyzer import PolicyAnalyzer
        from canary.metrics.prometheus import PrometheusProvider

        hub = hubs.get(policy.prometheus_url)
        if hub is None:
            url, timeout = policy.prometheus_url, min(10.0, policy.interval)
            hub = hubs[url] = BatchHub(lambda: PrometheusProvider(url, timeout=timeout),
                                       max_age=args.max_age)
        return PolicyAnalyzer(policy, BatchedProvider(hub, labels=policy.labels))

    def runner(state: RolloutState, store: StateStore) -> Runner:
        from canary.deploy import runner_for_state

        return runner_for_state(state, store=store, poll=tick, analyzer_factory=analyzer)

    return run_serve(args.store, listen=args.listen, tick=tick, workers=args.workers,
                     lease_ttl=30.0, runner_factory=runner)


if __name__ == "__main__":
    sys.exit(main())
