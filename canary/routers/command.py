"""Command adapter: drives any traffic router a script can change (cloud load balancers,
service meshes canary has no adapter for, in-house tooling).

``setCommand`` is run with ``{stable}`` and ``{canary}`` replaced by the percentages in
each argument; ``getCommand`` must print the split in effect, either as JSON
``{"stable": 95, "canary": 5}`` or as ``stable=95 canary=5``. Commands are argument lists
run without a shell, so a percentage can never become shell syntax. A non-zero exit, a
timeout or output that is not a split is a RouterError carrying the tail of stderr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from canary.durations import parse_duration
from canary.errors import RouterError
from canary.model import Weights

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
_KEY_VALUE = re.compile(r"^\s*stable\s*=\s*(\d+)[\s,]+canary\s*=\s*(\d+)\s*$")


class Config(BaseModel):
    """The ``spec.router`` block for ``type: command``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              frozen=True)

    set_command: Annotated[list[str], Field(min_length=1)]
    get_command: Annotated[list[str], Field(min_length=1)]
    timeout: Seconds = 30.0


def parse_split(output: str) -> Weights:
    """A split from ``getCommand``'s stdout; ValueError saying what was expected."""
    text = output.strip()
    stable: object
    canary: object
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        stable, canary = data.get("stable"), data.get("canary")
    else:
        match = _KEY_VALUE.match(text)
        if match is None:
            raise ValueError('expected {"stable": N, "canary": N} or "stable=N canary=N"')
        stable, canary = int(match.group(1)), int(match.group(2))
    if not (isinstance(stable, int) and isinstance(canary, int)) or isinstance(stable, bool) \
            or isinstance(canary, bool):
        raise ValueError("stable and canary must both be integers (percent)")
    if stable < 0 or canary < 0 or stable + canary != 100:
        raise ValueError(f"stable {stable} + canary {canary} is not a split of 100%")
    return Weights(canary=canary)


def _tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class CommandRouter:
    """Runs the user's commands to change and read the split."""

    set_command: tuple[str, ...]
    get_command: tuple[str, ...]
    timeout: float = 30.0

    def describe(self) -> str:
        return f"command {os.path.basename(self.set_command[0])} (get: " \
               f"{os.path.basename(self.get_command[0])})"

    def ensure(self) -> None:
        for argv, key in ((self.set_command, "setCommand"), (self.get_command, "getCommand")):
            if shutil.which(argv[0]) is None:
                raise RouterError(f"{key}: {argv[0]!r} is not an executable on PATH or a path "
                                  "to one")
        self.get_weights()

    def get_weights(self) -> Weights:
        output = self._run(self.get_command)
        try:
            return parse_split(output)
        except ValueError as exc:
            raise RouterError(f"getCommand `{' '.join(self.get_command)}` printed "
                              f"{_tail(output, 2)!r}: {exc}") from exc

    def set_weights(self, weights: Weights) -> None:
        values = {"{stable}": str(weights.stable), "{canary}": str(weights.canary)}
        argv = []
        for arg in self.set_command:
            for placeholder, value in values.items():
                arg = arg.replace(placeholder, value)
            argv.append(arg)
        self._run(argv)

    def _run(self, argv: Sequence[str]) -> str:
        what = " ".join(argv)
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True,
                                  timeout=self.timeout, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise RouterError(f"`{what}` did not finish within {self.timeout}s") from exc
        except OSError as exc:  # not found, not executable
            raise RouterError(f"cannot run `{what}`: {exc.strerror}; check the command "
                              "path") from exc
        if done.returncode != 0:
            raise RouterError(f"`{what}` failed (exit {done.returncode}): "
                              f"{_tail(done.stderr) or '(no stderr)'}")
        return done.stdout


def from_config(config: Config) -> CommandRouter:
    return CommandRouter(set_command=tuple(config.set_command),
                         get_command=tuple(config.get_command), timeout=config.timeout)
