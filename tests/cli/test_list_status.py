"""`canary list`, `canary --version`, and the environment variables shown in --help."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import typer
from typer.testing import CliRunner

from canary import __version__
from canary.cli import app
from canary.model import Phase
from canary.rollout.follow import DEFAULT_STORE as FOLLOW_DEFAULT
from canary.state import AttemptProgress
from canary.store.sqlite import SQLiteStore
from tests.cli.conftest import rollout

runner = CliRunner()


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"canary {__version__}\n"
    # Through the console entry point too (main() runs click without standalone mode).
    proc = subprocess.run([sys.executable, "-m", "canary", "--version"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == f"canary {__version__}\n"
    # deploy --version still overrides the rollout's version, it is not this flag.
    res = runner.invoke(app, ["deploy", "--help"])
    assert "overrides spec.version" in res.output


def test_list_one_line_per_rollout(db: tuple[str, SQLiteStore]) -> None:
    url, store = db
    old = store.create(rollout("checkout", version="2.0.0", age=7200))
    store.save(dataclasses.replace(old, phase=Phase.SUCCEEDED, stage_index=3,
                                   desired_weight=100, actual_weight=100))
    store.create(rollout("checkout", version="3.0.0", age=90, phase=Phase.PROGRESSING,
                         stable_version="2.0.0", stage_index=1, desired_weight=25,
                         actual_weight=25))
    store.create(rollout("search", age=3 * 86400, phase=Phase.ROLLING_BACK,
                         run=AttemptProgress(needs_human=True), stage_index=0, desired_weight=5,
                         actual_weight=None))
    res = runner.invoke(app, ["list", "--store", url])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "STAGE", "WEIGHT", "VERSIONS", "AGE"]
    assert lines[1].split() == ["checkout", "progressing", "2", "25%", "2.0.0", "->", "3.0.0",
                                "1m"]
    assert lines[2].split() == ["search", "rolling-back", "(needs", "a", "human)", "1", "5%",
                                "1.0.0", "->", "2.0.0", "3d"]
    assert len(lines) == 3
    rows = json.loads(runner.invoke(app, ["list", "--store", url, "-o", "json"]).output)
    assert [(r["name"], r["version"], r["phase"], r["canaryWeight"]) for r in rows] == [
        ("checkout", "3.0.0", "progressing", 25), ("search", "2.0.0", "rolling-back", 5)]
    assert rows[1]["needsHuman"] is True and rows[1]["ageSeconds"] >= 3 * 86400


def test_list_of_an_empty_store(db: tuple[str, SQLiteStore]) -> None:
    res = runner.invoke(app, ["list", "--store", db[0]])
    assert res.exit_code == 0 and res.output == "no rollouts\n"
    assert json.loads(runner.invoke(app, ["list", "--store", db[0], "-o", "json"]).output) == []


def test_store_comes_from_the_environment(db: tuple[str, SQLiteStore]) -> None:
    url, store = db
    store.create(rollout("checkout", phase=Phase.PROGRESSING))
    res = runner.invoke(app, ["status", "checkout", "-o", "json"], env={"CANARY_STORE": url})
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["phase"] == "progressing"


def test_every_option_with_an_environment_variable_shows_it() -> None:
    group = typer.main.get_command(app)  # typer vendors click: read it by its attributes
    commands = getattr(group, "commands", {})
    assert "status" in commands and "list" in commands
    seen: dict[str, set[str]] = {}
    for name, command in commands.items():
        for param in command.params:
            if getattr(param, "envvar", None):
                assert param.show_envvar, f"{name} {param.opts}"
                seen.setdefault(str(param.envvar), set()).update(param.opts)
        opts = {o for p in command.params for o in p.opts}
        if "--store" in opts:
            assert any(p.envvar == "CANARY_STORE" for p in command.params), name
    assert seen == {"CANARY_STORE": {"--store"}, "CANARY_SERVER": {"--server"},
                    "CANARY_LISTEN": {"--listen"}, "CANARY_LOG_FORMAT": {"--log-format"}}
    for command in ("status", "deploy", "list"):
        help_text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        assert "CANARY_STORE" in help_text
    assert "CANARY_SERVER" in runner.invoke(app, ["deploy", "--help"],
                                            terminal_width=200).output


def test_the_default_store_is_deploys() -> None:
    from canary.rollout.wiring import DEFAULT_STORE

    assert FOLLOW_DEFAULT == DEFAULT_STORE
