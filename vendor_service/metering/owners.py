"""Who owns an in-flight charge, and how another process tells whether that owner still lives.

An owner is one server process. It registers its pid, the pid's start time and a *host id*;
its heartbeat refreshes ``last_seen``. Another process decides that an owner is dead:

- on the same host id (same kernel boot, same pid namespace, so the pid names the same process):
  at once, when the pid is gone or now belongs to a process started at another time (pid reuse);
- elsewhere (another machine or container): when its heartbeat is older than the lease.

The host id includes the pid namespace because two containers on one kernel share the boot id
but not their pids: a pid from a neighbour container must never be looked up here.
"""

from __future__ import annotations

import errno
import os
import socket
from functools import lru_cache


@lru_cache(maxsize=1)
def host_id() -> str:
    """``hostname/boot id/pid namespace`` of this process (parts that cannot be read: empty)."""
    boot = _read("/proc/sys/kernel/random/boot_id").strip()
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return f"{socket.gethostname()}/{boot}/{pidns}"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from ``/proc/<pid>/stat``."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` (``/proc/<pid>/stat`` field 22); None when unreadable."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def pid_alive(pid: int, start: int | None) -> bool:
    """Whether ``pid`` on this host is still the process that registered with ``start``.

    A zombie (killed, not yet reaped by its parent) is dead: it can no longer commit anything.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        # EPERM: some process has the pid; the start time below tells whether it is ours.
    stat = _stat(pid)
    if stat is None:  # no /proc: trust the pid
        return True
    state, now = stat
    if state in ("Z", "X"):
        return False
    return start is None or now == start


def owner_alive(
    *, host: str, pid: int, pid_start: int | None, age_s: float, lease_s: float
) -> bool:
    """The liveness rule of the module docstring."""
    if host == host_id():
        return pid_alive(pid, pid_start)
    return age_s <= lease_s
