"""Who drives a rollout, and whether a lease row still keeps everyone else out: the lease
rules both stores apply (each with its own locking), written once."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime

from canary.errors import ConflictError


@dataclass(frozen=True)
class LeaseOwner:
    """Who drives a rollout: a random id per process, plus what it takes to prove it gone.

    ``id`` is ``<uuid4>@<pid namespace>:<boot id>:<start time>``; it is stored as the lease's
    owner, so both stores keep their columns and an older id (without ``@``) still works:
    it is simply never provably gone, only expired.
    """

    id: str
    host: str
    pid: int

    @staticmethod
    def here() -> LeaseOwner:
        return LeaseOwner.of_process(os.getpid())

    @staticmethod
    def of_process(pid: int) -> LeaseOwner:
        """The identity of process ``pid`` of this host, namespace and boot (tests build
        one for a child they killed)."""
        ident = f"{_pid_namespace()}:{_boot_id()}:{_start_time(pid)}"
        return LeaseOwner(id=f"{uuid.uuid4().hex}@{ident}", host=socket.gethostname(), pid=pid)

    def provably_gone(self) -> bool:
        """Same host, same PID namespace, same boot, and the pid is gone (or a zombie, or
        now a different process: its start time differs). Anything else, alive or not
        knowable from here (another container sharing the hostname on host networking,
        another boot), is left to the lease's expiry."""
        if self.host != socket.gethostname() or "@" not in self.id:
            return False
        ns, _, rest = self.id.split("@", 1)[1].partition(":")
        boot, _, start = rest.partition(":")
        if not ns or ns != _pid_namespace() or not boot or boot != _boot_id():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # exists, another user's: its start time still tells
        now = _start_time(self.pid)
        if start and now and now != start:
            return True  # the pid was reused by another process
        return bool(start) and start == now and _is_zombie(self.pid)


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)  # the namespace's inode
    except OSError:
        return ""


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """Clock ticks after boot at which ``pid`` started (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def holds(holder: LeaseOwner, *, until: datetime, now: datetime) -> bool:
    """Whether ``holder``'s lease, valid ``until``, still keeps others out at ``now``: not
    expired, and its process not provably gone."""
    return until > now and not holder.provably_gone()


def lease_conflict(name: str, holder: LeaseOwner, *, until: str) -> ConflictError:
    return ConflictError(f"rollout {name!r} is being driven by another controller (pid "
                         f"{holder.pid} on {holder.host}, lease until {until})")
