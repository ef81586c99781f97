"""Shell completion: the script installs, and <TAB> completes rollout names from the store.

Run through a real bash, as a user's shell would: the script `--show-completion bash`
prints is sourced and its completion function called with COMP_WORDS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from canary.store.sqlite import SQLiteStore
from tests.cli.conftest import rollout

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def env_with(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The installed ``canary`` console script on PATH (completion is keyed on the program
    name), this checkout first on the path, a throwaway HOME."""
    bindir = Path(sys.executable).parent
    assert (bindir / "canary").is_file(), "run scripts/setup: the console script is missing"
    env = {k: v for k, v in os.environ.items() if k != "CANARY_STORE"}
    env.update(PATH=f"{bindir}:{env['PATH']}", PYTHONPATH=str(REPO), HOME=str(tmp_path / "home"),
               **extra)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def complete(env: dict[str, str], words: str, cwd: Path) -> list[str]:
    script = ('source <(canary --show-completion bash)\n'
              f'COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n'
              '_canary_completion canary\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
    res = subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return [w for w in res.stdout.splitlines() if w]


def test_install_completion_for_bash(tmp_path: Path) -> None:
    env = env_with(tmp_path)
    canary = str(Path(sys.executable).parent / "canary")
    res = subprocess.run([canary, "--install-completion", "bash"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    installed = tmp_path / "home" / ".bash_completions" / "canary.sh"
    assert "_CANARY_COMPLETE=complete_bash" in installed.read_text()
    assert str(installed) in (tmp_path / "home" / ".bashrc").read_text()
    shown = subprocess.run([canary, "--show-completion", "bash"], env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "complete -o default -F _canary_completion canary" in shown


def test_completes_rollout_names_from_the_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(str(path))
    for name in ("checkout", "cart", "search"):
        store.create(rollout(name))
    store.close()
    env = env_with(tmp_path, CANARY_STORE=f"sqlite:///{path}")
    assert complete(env, "canary status c", tmp_path) == ["cart", "checkout"]
    assert complete(env, "canary abort s", tmp_path) == ["search"]
    assert complete(env, "canary history ch", tmp_path) == ["checkout"]
    # --store on the command line wins over the environment.
    env.pop("CANARY_STORE")
    assert complete(env, f"canary promote --store sqlite:///{path} ca", tmp_path) == ["cart"]
    # Commands complete too (typer's own).
    assert "list" in complete(env, "canary l", tmp_path)


def test_a_missing_store_completes_nothing_and_creates_nothing(tmp_path: Path) -> None:
    env = env_with(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    assert complete(env, "canary status c", work) == []
    assert not (work / ".canary").exists()  # the default SQLite file was not created
    env["CANARY_STORE"] = "postgresql://canary@127.0.0.1:1/nothing"
    assert complete(env, "canary status c", work) == []
