"""Start a server as a plain process, wait for it with a bounded loop, stop it by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.05,
               what: str = "condition") -> None:
    """Poll ``check`` until it is true; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - a server that is still starting may refuse
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class Server:
    """A running server process: its PID, its log file, and how to stop it."""

    name: str
    argv: Sequence[str]
    log_path: str
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, env: dict[str, str] | None = None, cwd: str | None = None,
              user: str | None = None) -> Server:
        if os.environ.get("CANARY_TEST_NO_SERVERS"):
            # The test suite's fast lane: a test that gets here starts a real server but is
            # not marked `servers` (tests/conftest.py says how tests are marked).
            raise RuntimeError(f"the fast lane starts no servers, but this test starts "
                               f"{self.name}: mark it `servers` (tests/conftest.py)")
        argv = list(self.argv)
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=cwd, start_new_session=True)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID (the whole process group), SIGKILL if it does not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
