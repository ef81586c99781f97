"""`canary schema`, `canary validate --preflight`, `canary history` checks, and the
preflight `canary deploy` runs before a new rollout (proposed; needs the cli/deploy lines)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.errors import MetricsError
from canary.model import Event, MetricResult, Outcome
from canary.rollout.wiring import submit
from canary.state import RolloutState
from canary.store.registry import open_store
from lab.proc import free_port

runner = CliRunner()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def files(tmp_path: Path, url: str) -> Path:
    (tmp_path / "policy.yaml").write_text(f"""\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: p
spec:
  prometheus:
    url: {url}
  metrics:
    - name: error-rate
      builtin: error-rate
      max: 0.01
""")
    (tmp_path / "rollout.yaml").write_text("""\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "2.0.0"
  stableVersion: "1.0.0"
  router:
    type: "null"
  analysis:
    policy: policy.yaml
""")
    return tmp_path / "rollout.yaml"


@pytest.mark.parametrize(("kind", "title"), [("policy", "canary/v1 AnalysisPolicy"),
                                             ("rollout", "canary/v1 Rollout")])
def test_schema_prints_json(kind: str, title: str) -> None:
    result = runner.invoke(app, ["schema", kind])
    assert result.exit_code == 0 and json.loads(result.output)["title"] == title


def test_schema_of_something_else_is_a_usage_error() -> None:
    assert runner.invoke(app, ["schema", "alert"]).exit_code == 2


def test_validate_preflight_names_an_unreachable_prometheus(tmp_path: Path) -> None:
    rollout = files(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert runner.invoke(app, ["validate", str(rollout)]).exit_code == 0
    result = runner.invoke(app, ["validate", "--preflight", str(rollout)])
    assert result.exit_code == 2  # validate: any problem is a file that does not validate
    assert "spec.prometheus.url: Prometheus could not answer" in result.output


def test_deploy_preflight_refuses_a_new_rollout_and_stores_nothing(tmp_path: Path) -> None:
    rollout = files(tmp_path, f"http://127.0.0.1:{free_port()}")
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    with pytest.raises(MetricsError, match="preflight could not run; nothing was changed"):
        submit(rollout.read_text(), file=str(rollout), version=None, store=store, now=T0,
               preflight=True)
    assert store.history("checkout", limit=5) == []
    submit(rollout.read_text(), file=str(rollout), version=None, store=store, now=T0)
    # Resuming an active rollout never waits on preflight.
    _, _, _, resumed = submit(rollout.read_text(), file=str(rollout), version=None,
                              store=store, now=T0, preflight=True)
    assert resumed


def test_history_shows_every_check(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(store_url)
    state = RolloutState(id="r1", name="checkout", service="checkout", version="2.0.0",
                         stable_version="1.0.0", document="", source="r.yaml", created_at=T0,
                         updated_at=T0)
    checks = [Event(at=T0, kind="analysis", message="analysis passed",
                    data={"outcome": o.value, "results": [MetricResult(
                        name="error-rate", outcome=o, value=v, query="q", threshold="<= 0.01",
                        message=f"error-rate = {v} ... (threshold <= 0.01, window 1m); query: q"
                    ).to_json()]}) for o, v in ((Outcome.PASSED, 0.0), (Outcome.FAILED, 0.5))]
    store.create(state, events=[Event(at=T0, kind="stage-reached", message="5%",
                                      data={"stage": 1, "weight": 5}), *checks])
    result = runner.invoke(app, ["history", "checkout", "--store", store_url])
    assert result.exit_code == 0, result.output
    assert "checks (2):" in result.output and "stage 1 (5%)" in result.output
    assert "error-rate = 0.5 ..." in result.output
