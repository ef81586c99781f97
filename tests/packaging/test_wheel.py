"""The built wheel, installed into a fresh virtualenv outside the checkout, works on its own.

Nothing of the checkout is on the path: the wheel's canary must find its shipped policies,
validate, deploy against the lab (real HAProxy, demo apps, Prometheus) and backtest; and
a store or router whose extra is not installed is exit 2 naming the pip install. The
dependencies come from pip's own cache after the first run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from canary import __version__
from tests.e2e.conftest import Lab, Stack, write_policy, write_rollout

pytestmark = pytest.mark.servers
REPO = Path(__file__).resolve().parents[2]
MakeStack = Callable[..., Stack]


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no CANARY_*: the venv's canary and nothing of this checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("CANARY_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """bin/ of a fresh venv with the wheel (base install, no extras)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("canary", "policies"):
        shutil.copytree(REPO / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist",
                src, cwd=root, env=clean_env())
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (root / "dist").glob("canary-*.whl")
    # No pip inside (ensurepip is slow): this interpreter's pip installs into it, with
    # pip's cache and configuration.
    made = run(sys.executable, "-m", "venv", "--without-pip", root / "venv", cwd=root,
               env=clean_env())
    assert made.returncode == 0, made.stderr
    bindir = root / "venv" / "bin"
    installed = run(sys.executable, "-m", "pip", "--python", bindir / "python", "install",
                    "-q", wheel, cwd=root, env=clean_env())
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield bindir


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    where = tmp_path / "elsewhere"
    where.mkdir()
    return where


def test_it_is_the_wheel_not_the_checkout(venv: Path, elsewhere: Path) -> None:
    res = run(venv / "python", "-c", "import canary, canary.config.policyfile as p; "
              "print(canary.__file__); print(p.PACKAGE_POLICIES)", cwd=elsewhere,
              env=clean_env())
    module, policies = res.stdout.split()
    assert "site-packages" in module and not module.startswith(str(REPO))
    assert policies == str(Path(module).parent / "policies")
    res = run(venv / "canary", "--version", cwd=elsewhere, env=clean_env())
    assert res.returncode == 0 and res.stdout == f"canary {__version__}\n"
    lean = run(venv / "python", "-c", "import kubernetes", cwd=elsewhere, env=clean_env())
    assert lean.returncode != 0  # the base install leaves the extras out


def test_validate_resolves_every_shipped_policy(venv: Path, elsewhere: Path) -> None:
    text = (REPO / "examples" / "rollouts" / "haproxy.yaml").read_text()
    (elsewhere / "haproxy.yaml").write_text(text)
    res = run(venv / "canary", "validate", "haproxy.yaml", cwd=elsewhere, env=clean_env())
    assert res.returncode == 0, res.stderr
    assert res.stdout == "haproxy.yaml: valid Rollout\n"
    for policy in sorted(p.stem for p in (REPO / "policies").glob("*.yaml")):
        f = elsewhere / f"{policy}.yaml"
        f.write_text(text.replace("policy: default", f"policy: {policy}"))
        res = run(venv / "canary", "validate", f.name, cwd=elsewhere, env=clean_env())
        assert res.returncode == 0, (policy, res.stderr)


def test_backtest_with_the_shipped_default(venv: Path, elsewhere: Path) -> None:
    shutil.copytree(REPO / "tests" / "data" / "backtest", elsewhere / "recordings")
    res = run(venv / "canary", "backtest", "--policy", "default", "--data", "recordings",
              "-o", "json", cwd=elsewhere, env=clean_env())
    assert res.returncode == 0, res.stderr
    answers = {a["scenario"]: a["decision"] for a in map(json.loads, res.stdout.splitlines())}
    # One decision per recording; the clear cases decided as from the checkout.
    assert set(answers) == {"err+5-0", "latency-x1.5-0", "low-traffic", "noise-0"}
    assert set(answers.values()) <= {"promote", "rollback", "inconclusive"}
    assert answers["err+5-0"] == answers["latency-x1.5-0"] == "rollback"
    assert answers["noise-0"] == "promote"


def test_missing_extras_name_the_pip_install(venv: Path, elsewhere: Path) -> None:
    res = run(venv / "canary", "status", "checkout", "--store",
              "postgresql://canary@127.0.0.1:1/canary", cwd=elsewhere, env=clean_env())
    assert res.returncode == 2
    assert "pip install 'canary[postgres]'" in res.stderr
    assert "Traceback" not in res.stderr
    text = (REPO / "examples" / "rollouts" / "haproxy.yaml").read_text()
    (elsewhere / "istio.yaml").write_text(text.replace("type: haproxy", "type: istio"))
    res = run(venv / "canary", "validate", "istio.yaml", cwd=elsewhere, env=clean_env())
    assert res.returncode == 2
    assert "pip install 'canary[kubernetes]'" in res.stderr


def test_deploy_against_the_lab(venv: Path, lab: Lab, stack_for: MakeStack) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy, pause="3s")
    env = clean_env(SLACK_WEBHOOK_URL=stack.slack.url())
    res = run(venv / "canary", "deploy", "-f", rollout, cwd=stack.dir, env=env, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert stack.all_on("canary-1")
    # The default store: SQLite under the working directory.
    assert (stack.dir / ".canary" / "state.db").is_file()
    listed = run(venv / "canary", "list", "-o", "json", cwd=stack.dir, env=env)
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["phase"], row["canaryWeight"]) == ("checkout", "succeeded", 100)
