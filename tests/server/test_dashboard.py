"""examples/grafana/dashboard.json reads what `canary serve` exports, in PromQL that a real
Prometheus accepts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import REPO, Lab
from tests.server.conftest import StartServe

DASHBOARD = REPO / "examples" / "grafana" / "dashboard.json"


def exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        for value in node.values():
            yield from exprs(value)
    elif isinstance(node, list):
        for value in node:
            yield from exprs(value)


def test_dashboard_queries_parse_and_use_exported_metrics(lab: Lab, start_serve: StartServe,
                                                          tmp_path: Path) -> None:
    ctl = start_serve(f"sqlite:///{tmp_path}/state.db")
    exposition = ctl.call("GET", "/metrics", token=None).text
    families = set(re.findall(r"^# TYPE (\S+) (\w+)", exposition, re.M))
    exported = {name for name, _ in families}
    exported |= {f"{name}_{suffix}" for name, kind in families if kind == "histogram"
                 for suffix in ("bucket", "count", "sum")}
    exported |= {f"{name}_total" for name, kind in families if kind == "counter"}
    queries = list(exprs(json.loads(DASHBOARD.read_text())))
    assert len(queries) >= 12
    used = set()
    for expr in queries:
        used |= set(re.findall(r"\bcanary_\w+", expr))
        concrete = expr.replace("$job", ".*").replace("$rollout", ".*")
        r = httpx.get(f"{lab.prometheus_url}/api/v1/query", params={"query": concrete},
                      timeout=10, trust_env=False)
        assert r.status_code == 200 and r.json()["status"] == "success", (expr, r.text)
    assert used <= exported, used - exported
    for wanted in ("canary_rollouts", "canary_rollout_canary_weight",
                   "canary_analysis_checks_total", "canary_rollout_duration_seconds_bucket",
                   "canary_rollbacks_total", "canary_tick_duration_seconds_bucket"):
        assert wanted in used
