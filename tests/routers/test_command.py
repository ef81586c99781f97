"""Command adapter beyond the contract: the two output forms, argument substitution
without a shell, and what a failing or hanging command turns into."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from canary.errors import RouterError
from canary.model import Weights
from canary.routers.command import CommandRouter, parse_split

from .conftest import WEIGHTS_CMD


@pytest.mark.parametrize("output", ['{"stable": 75, "canary": 25}\n', "stable=75 canary=25\n",
                                    "  stable = 75, canary = 25 "])
def test_both_output_forms_parse(output: str) -> None:
    assert parse_split(output) == Weights(canary=25)


@pytest.mark.parametrize(("output", "complaint"), [
    ('{"stable": 70, "canary": 25}', "not a split of 100%"),
    ('{"stable": 100}', "must both be integers"),
    ('{"stable": 75.0, "canary": 25}', "must both be integers"),
    ('{"stable": true, "canary": 0}', "must both be integers"),
    ('{"stable": 75, "canary": 25', "invalid JSON"),
    ("canary=25 stable=75", "expected"),
    ("stable=75 canary=25 extra", "expected"),
    ("", "expected"),
])
def test_anything_else_is_refused(output: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_split(output)


def test_placeholders_are_substituted_inside_arguments_without_a_shell(tmp_path: Path) -> None:
    out = tmp_path / "argv.txt"
    script = "import sys; open(sys.argv[1], 'w').write('|'.join(sys.argv[2:]))"
    router = CommandRouter(
        set_command=(sys.executable, "-c", script, str(out), "--split={stable}/{canary}",
                     "$(echo {canary}); rm -rf /"),
        get_command=(sys.executable, WEIGHTS_CMD, str(tmp_path / "s"), "get"))
    router.set_weights(Weights(canary=5))
    assert out.read_text() == "--split=95/5|$(echo 5); rm -rf /"


def test_get_reads_the_key_value_form(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    state.write_text('{"stable": 40, "canary": 60}')
    router = CommandRouter(set_command=("true",),
                           get_command=(sys.executable, WEIGHTS_CMD, str(state), "get", "--kv"))
    assert router.get_weights() == Weights(canary=60)


def test_failure_carries_the_exit_code_and_the_stderr_tail(tmp_path: Path) -> None:
    Path(f"{tmp_path / 's.json'}.refuse").touch()
    router = CommandRouter(
        set_command=(sys.executable, WEIGHTS_CMD, str(tmp_path / "s.json"), "set", "{stable}",
                     "{canary}"),
        get_command=("true",))
    with pytest.raises(RouterError, match=r"exit 1\): traffic-tool: change refused"):
        router.set_weights(Weights(canary=5))


def test_output_that_is_not_a_split_is_a_router_error() -> None:
    router = CommandRouter(set_command=("true",), get_command=("echo", "all good"))
    with pytest.raises(RouterError, match="printed 'all good'"):
        router.get_weights()


def test_hanging_command_is_stopped_at_the_timeout() -> None:
    router = CommandRouter(set_command=(sys.executable, "-c", "import time; time.sleep(30)"),
                           get_command=("true",), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RouterError, match="did not finish within 0.5s"):
        router.set_weights(Weights(canary=5))
    assert time.monotonic() - started < 5


def test_missing_executable_fails_ensure_and_calls() -> None:
    router = CommandRouter(set_command=("/nonexistent/lb-weights",), get_command=("true",))
    with pytest.raises(RouterError, match="setCommand"):
        router.ensure()
    with pytest.raises(RouterError, match="cannot run"):
        router.set_weights(Weights(canary=5))
