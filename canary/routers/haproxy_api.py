"""HAProxy's runtime API (the ``stats socket``), as the HAProxy router speaks it: one command
per connection, the reply read to EOF, and errors recognised from the reply text because
the API has no status codes. Every failure is a RouterError saying what to check."""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from canary.errors import RouterError

_GET_WEIGHT = re.compile(r"^(\d+) \(initial (\d+)\)$")


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


@dataclass(frozen=True)
class RuntimeAPI:
    """One stats socket: a unix socket path or a TCP address."""

    socket_path: str | None
    address: tuple[str, int] | None
    timeout: float

    @property
    def endpoint(self) -> str:
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        assert self.address is not None
        return f"{self.address[0]}:{self.address[1]}"

    def change(self, command: str) -> None:
        """A command that answers nothing when it worked (``set weight``, ``set server``)."""
        reply = self.command(command).strip()
        if reply:
            raise RouterError(f"HAProxy ({self.endpoint}) refused `{command}`: {reply}")

    def weight(self, backend: str, server: str) -> int:
        command = f"get weight {backend}/{server}"
        reply = self.command(command).strip()
        match = _GET_WEIGHT.match(reply)
        if match is None:
            raise RouterError(
                f"HAProxy ({self.endpoint}) answered `{command}` with {reply!r}; check that "
                f"backend {backend} has a server named {server} in haproxy.cfg")
        return int(match.group(1))

    def maintenance(self, backend: str, servers: Sequence[str]) -> dict[str, bool]:
        """Which of ``servers`` are in maintenance (forced by the runtime API or config)."""
        reply = self.command(f"show servers state {backend}")
        state: dict[str, bool] = {}
        for line in reply.splitlines():
            fields = line.split()
            if len(fields) > 6 and not line.startswith("#") and fields[3] in servers:
                state[fields[3]] = bool(int(fields[6]) & 0x1)
        missing = [s for s in servers if s not in state]
        if missing:
            raise RouterError(f"HAProxy ({self.endpoint}) did not report the state of "
                              f"{', '.join(missing)} in backend {backend}")
        return state

    def acl(self, command: str, *, acl_file: str | None) -> str:
        """An ACL command; a reply naming an unknown ACL file is a RouterError."""
        reply = self.command(command)
        text = reply.strip()
        if text.startswith(("Unknown ACL", "Missing ACL", "Unknown command")) or \
                "not found" in text.lower():
            raise RouterError(f"HAProxy ({self.endpoint}) refused `{command}`: {text[:200]}; "
                              f"check that haproxy.cfg has an `acl ... -f {acl_file}` "
                              "line in the backend")
        return reply

    def command(self, command: str) -> str:
        """Send one command on a fresh connection and read the reply to EOF."""
        try:
            with self._connect() as conn:
                conn.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise RouterError(
                f"HAProxy runtime API at {self.endpoint} did not answer `{command}` within "
                f"{self.timeout}s; check that it is a HAProxy stats socket") from exc
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise RouterError(
                f"cannot reach the HAProxy runtime API at {self.endpoint} ({exc.strerror}); "
                "check that haproxy is running and haproxy.cfg has a matching "
                "`stats socket ... level admin` line") from exc
        except OSError as exc:
            raise RouterError(
                f"HAProxy runtime API at {self.endpoint} failed on `{command}`: {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def _connect(self) -> socket.socket:
        if self.address is not None:
            return socket.create_connection(self.address, timeout=self.timeout)
        assert self.socket_path is not None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(self.timeout)
            conn.connect(self.socket_path)
        except BaseException:
            conn.close()
            raise
        return conn
