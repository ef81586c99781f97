"""Exit codes that never lie: a bug of canary is exit 4 with one line naming where the
traceback went, never 1 (which promises the traffic is back on stable) and never a
traceback unless --debug asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from tests.config.test_hardening import POLICY, ROLLOUT
from tests.fuzz.mutations import BOMB, REPO


def _boom(*args: object, **kwargs: object) -> str:
    raise RuntimeError("boom\nsecond line")


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "debug.log"
    monkeypatch.setenv("CANARY_DEBUG_LOG", str(path))
    monkeypatch.delenv("CANARY_DEBUG", raising=False)
    return path


def test_an_internal_error_is_exit_4_with_one_line(log: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("canary.config.spec.load_any", _boom)
    result = CliRunner().invoke(app, ["validate", "x.yaml"])
    assert result.exit_code == 4
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]] and "Traceback" not in result.output
    assert lines[0].startswith("canary: internal error: RuntimeError: boom second line;")
    assert "state is kept" in lines[0] and str(log) in lines[0] and "--debug" in lines[0]
    written = log.read_text()
    assert "Traceback" in written and "RuntimeError: boom" in written and "_boom" in written


def test_debug_prints_the_traceback(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("canary.config.spec.load_any", _boom)
    result = CliRunner().invoke(app, ["--debug", "validate", "x.yaml"])
    assert result.exit_code == 4
    assert "Traceback" in result.output and "_boom" in result.output
    assert "canary: internal error:" in result.output


def test_a_crash_in_deploy_is_not_a_rollback(log: Path, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr("canary.rollout.wiring.prepare", _boom)
    result = CliRunner().invoke(app, ["deploy", "-f", "x.yaml", "--no-preflight",
                                      "--store", f"sqlite:///{tmp_path}/s.db"])
    assert result.exit_code == 4, result.output
    assert "internal error" in result.output and "Traceback" not in result.output


def test_an_unwritable_debug_log_is_said(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_DEBUG_LOG", str(tmp_path / "missing-dir" / "debug.log"))
    monkeypatch.setattr("canary.config.spec.load_any", _boom)
    result = CliRunner().invoke(app, ["validate", "x.yaml"])
    assert result.exit_code == 4 and "could not be written" in result.output


def _run(args: list[str], env: dict[str, str], code: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "canary", *args] if code is None else [
        sys.executable, "-c", code, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, **env}, check=False)


def test_main_in_a_real_process(tmp_path: Path) -> None:
    env = {"CANARY_DEBUG_LOG": str(tmp_path / "debug.log"), "CANARY_DEBUG": ""}
    code = ("import sys, canary.config.spec\n"
            "def boom(*a, **k): raise KeyError('oops')\n"
            "canary.config.spec.load_any = boom\n"
            "from canary.cli import main\n"
            "sys.argv = ['canary', *sys.argv[1:]]\n"
            "main()\n")
    done = _run(["validate", "x.yaml"], env, code)
    assert done.returncode == 4
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "internal error: KeyError: 'oops'" in done.stderr
    assert "Traceback" in (tmp_path / "debug.log").read_text()
    done = _run(["--debug", "validate", "x.yaml"], env, code)
    assert done.returncode == 4 and "Traceback" in done.stderr


NASTY_FILES = {
    "not-utf8.yaml": ROLLOUT.encode().replace(b"checkout\nspec", b"caf\xe9\nspec"),
    "bomb.yaml": (ROLLOUT + BOMB).encode(),
    "deep.yaml": (ROLLOUT + "x: " + "[" * 2000 + "]" * 2000).encode(),
    "nan.yaml": ROLLOUT.replace("pause: 1m", "pause: .nan").encode(),
    "maybe.yaml": ROLLOUT.replace("service: checkout", "service: !!bool maybe").encode(),
    "nul.yaml": ROLLOUT.replace('"2.0.0"', '"2.0.0\\0"').encode(),
}


def test_canary_validate_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    paths = []
    for name, data in NASTY_FILES.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    done = _run(["validate", *paths], {"CANARY_DEBUG_LOG": str(tmp_path / "debug.log")})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    refusals = done.stderr.strip().splitlines()
    assert len(refusals) == len(NASTY_FILES)  # one line per file, each naming file and line
    for path, line in zip(paths, refusals, strict=True):
        assert line.startswith(f"canary: {path}:"), line
    assert not (tmp_path / "debug.log").exists()
