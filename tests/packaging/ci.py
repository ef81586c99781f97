"""Run the shell steps of examples/ci/ as the CI services would, read from the YAML.

GitHub Actions: a step's env is the workflow's, the job's and the step's, with
``${{ secrets.X }}`` and ``${{ inputs.X }}`` filled in; ``shell: bash`` runs
``bash --noprofile --norc -eo pipefail``; $GITHUB_OUTPUT is a file. GitLab CI: the job's
variables (``$VAR`` expanded), ``script`` in one bash, ``after_script`` in another.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"
WORKFLOW = CI / "github-actions-deploy.yml"
GITLAB = CI / ".gitlab-ci.yml"
_EXPR = re.compile(r"\$\{\{\s*(secrets|inputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def github_step(step_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the step, the env it gets before expressions are filled) from the workflow."""
    wf = load(WORKFLOW)
    job = wf["jobs"]["deploy"]
    step = next(s for s in job["steps"] if s.get("id") == step_id)
    env = {**wf.get("env", {}), **job.get("env", {}), **step.get("env", {})}
    return step, env


def fill(value: object, *, secrets: Mapping[str, str], inputs: Mapping[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        source = secrets if m.group(1) == "secrets" else inputs
        return source[m.group(2)]

    return _EXPR.sub(one, str(value))


@dataclass
class Job:
    """What the runner gives a step: a working directory, a PATH, secrets, outputs."""

    workdir: Path
    path: str  # PATH with the canary console script first
    secrets: Mapping[str, str]
    inputs: Mapping[str, str]

    def github_env(self, step_id: str, **overrides: str) -> tuple[str, dict[str, str]]:
        step, env = github_step(step_id)
        assert step.get("shell") == "bash", step_id
        full = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
        full.update({k: fill(v, secrets=self.secrets, inputs=self.inputs)
                     for k, v in env.items()})
        full.update(PATH=self.path, GITHUB_OUTPUT=str(self.workdir / ".github_output"),
                    **overrides)
        return str(step["run"]), full

    def github(self, step_id: str, **overrides: str) -> subprocess.Popen[str]:
        """Start one `run:` step of the workflow; the caller waits (or kills it)."""
        script, env = self.github_env(step_id, **overrides)
        path = self.workdir / f".step-{step_id}.sh"
        path.write_text(script)
        return subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail",
                                 str(path)], cwd=self.workdir, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def outputs(self) -> dict[str, str]:
        lines = (self.workdir / ".github_output").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def gitlab(self, part: str, variables: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        """Run the deploy job's ``script`` or ``after_script`` as one bash."""
        job = load(GITLAB)["deploy"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
        env.update(self.secrets)  # project CI/CD variables
        env.update(variables)  # pipeline variables win over project ones
        for key, value in job.get("variables", {}).items():
            env[key] = _expand(str(value), env) if key not in variables else env[key]
        env["PATH"] = self.path
        script = "\n".join(str(line) for line in job[part])
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                               script], cwd=self.workdir, env=env, text=True,
                              capture_output=True, timeout=300, check=False)


def _expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)
