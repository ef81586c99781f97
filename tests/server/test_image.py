"""The Dockerfile, without a Docker engine: its build stage's wheel command and its runtime
stage's install commands run as written (paths moved into a temp folder) into a fresh
virtualenv outside the checkout, and `canary serve` started from that virtualenv with the
image's environment answers /healthz, /readyz and the image's own HEALTHCHECK."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lab.proc import Server, free_port, wait_until
from tests.e2e.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "FROM":
            current = out.setdefault(rest.split(" AS ")[-1].strip(), [])
        current.append((word, rest.strip()))
    return out


def test_dockerfile_is_pinned_two_stage_and_non_root() -> None:
    s = stages()
    assert list(s) == ["build", "runtime"]
    for steps in s.values():
        base = steps[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    runtime = dict((w, r) for w, r in s["runtime"] if w in ("USER", "EXPOSE", "HEALTHCHECK"))
    assert re.fullmatch(r"\d+(:\d+)?", runtime["USER"])
    assert runtime["EXPOSE"] == "8080"
    assert "/healthz" in runtime["HEALTHCHECK"]
    runs = " ".join(r for w, r in s["runtime"] if w == "RUN")
    assert "--no-compile" not in runs and "compileall" in runs and "[all]" in runs


def _sh(command: str, *, cwd: Path, env: dict[str, str]) -> None:
    # The Dockerfile's RUN lines are shell commands (that is what `RUN x` means).
    done = subprocess.run(["/bin/sh", "-ec", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.servers
def test_runtime_stage_installs_and_serves(tmp_path: Path) -> None:
    s = stages()
    src, wheels, venv, work = (tmp_path / "src", tmp_path / "wheels", tmp_path / "venv",
                               tmp_path / "work")
    # build stage: COPY what it copies, then its RUN lines with /wheels moved.
    for word, rest in s["build"]:
        if word == "COPY":
            *froms, _ = rest.split()
            for f in froms:
                dest = src / f
                dest.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / f).is_dir():
                    shutil.copytree(REPO / f, dest, ignore=shutil.ignore_patterns(
                        "__pycache__", "*.egg-info"))
                else:
                    shutil.copy(REPO / f, dest)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))}
    env = dict(base_env, PATH=f"{venv}/bin:{base_env['PATH']}")
    for word, rest in s["build"]:
        if word == "RUN":
            _sh(rest.replace("/wheels", str(wheels)), cwd=src, env=env)
    assert list(wheels.glob("canary-*.whl"))
    # runtime stage: the install and compile lines as written; the user lines need root.
    image_env = {}
    for word, rest in s["runtime"]:
        if word == "RUN" and "useradd" not in rest:
            _sh(rest.replace("/wheels", str(wheels)), cwd=tmp_path, env=env)
        elif word == "ENV":
            image_env.update(re.findall(r"(\w+)=(\S+)", rest))
    installed = subprocess.run([f"{venv}/bin/python", "-c", "import canary; "
                                "print(canary.__file__)"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
    assert installed.startswith(str(venv)), installed  # not the checkout
    assert list(Path(installed).parent.glob("server/__pycache__/api.*.pyc"))  # bytecode compiled
    # Start it as the image would: ENTRYPOINT + CMD, settings from the environment only.
    work.mkdir()
    port = free_port()
    image_env.update(CANARY_LISTEN=f"127.0.0.1:{port}", CANARY_STORE=f"sqlite:///{work}/s.db",
                     CANARY_POLICY_PATH=str(REPO / "policies"),
                     CANARY_API_TOKENS_READ="r-token", CANARY_API_TOKENS_OPERATOR="o-token")
    run_env = dict(env, **image_env)
    entry = json.loads(next(r for w, r in s["runtime"] if w == "ENTRYPOINT"))
    cmd = json.loads(next(r for w, r in s["runtime"] if w == "CMD"))
    server = Server(name="image", argv=[f"{venv}/bin/{entry[0]}", *entry[1:], *cmd],
                    log_path=str(tmp_path / "serve.log"))
    server.start(env=run_env, cwd=str(work))
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + "/healthz", trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(lambda: up() or not server.alive(), timeout=60, what="canary serve")
        assert server.alive(), Path(tmp_path / "serve.log").read_text()
        assert httpx.get(url + "/readyz", trust_env=False).json()["ok"] is True
        r = httpx.get(url + "/api/v1/rollouts", headers={"Authorization": "Bearer r-token"},
                      trust_env=False)
        assert r.status_code == 200 and r.json() == {"rollouts": []}
        health = next(r for w, r in s["runtime"] if w == "HEALTHCHECK")
        check = json.loads(health[health.index("CMD") + 3:].strip())
        done = subprocess.run([f"{venv}/bin/{check[0]}", *check[1:]], env=run_env,
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
