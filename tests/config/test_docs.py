"""Every complete rollout file in the README and docs/ is one `canary validate` accepts:
documentation that drifts from the code is found here, not by a user."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/XXXXXXXX",
       "PAGER_BRIDGE_URL": "https://bridge.example/hook", "PAGER_BRIDGE_SECRET": "s3cret-123",
       "DEPLOY_TOKEN": "tok-123456", "TEAMS_WORKFLOW_URL": "https://teams.example/workflow",
       "PAGERDUTY_ROUTING_KEY": "rk-1234567", "SLACK_BOT_TOKEN": "xoxb-123456"}


def rollout_blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
            if "kind: Rollout" in block:
                found.append((f"{doc.name}#{i}", block))
    return found


@pytest.mark.parametrize(("where", "text"), rollout_blocks(), ids=lambda v: str(v)[:40])
def test_documented_rollouts_validate(where: str, text: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    f = tmp_path / "rollout.yaml"
    f.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(f)])
    assert result.exit_code == 0, f"{where}: {result.output}"


def test_the_documents_have_rollouts_to_check() -> None:
    assert len(rollout_blocks()) >= 4
